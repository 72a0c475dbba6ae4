//! The sharecall location service: the three providers. SKELETON.
