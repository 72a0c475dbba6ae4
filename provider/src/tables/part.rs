//! A provider's part of a client request: defined once, with its JSON, in
//! [`sharecall_proto::part`]; the share-vector layout is
//! [`sharecall_proto::layout`]. Re-exported here under the paths the
//! tables and the API use.

use sharecall_proto::layout::decode_share_vector;
use sharecall_proto::Share;

pub use sharecall_proto::layout::encode_share_vector as encode_shares;
pub use sharecall_proto::part::{
    import_to_stored_bytes, merge_import, parse_stored_import, Kind, Part, PartError,
};
pub use sharecall_proto::public::Public;

/// Decodes `n` shares laid out as all first components, then all second;
/// `None` on a wrong length or a non-canonical element.
pub fn decode_shares(bytes: &[u8], n: usize) -> Option<Vec<Share>> {
    decode_share_vector(bytes, n).ok()
}
