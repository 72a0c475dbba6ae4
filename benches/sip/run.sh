#!/usr/bin/env bash
# SIP load and latency benchmark: Kamailio (reference), the sharecall front
# end in plaintext mode, and in sharecall mode (a local three-provider
# cluster). See benches/sip/README.md.
#
#   benches/sip/run.sh [kamailio|plaintext|sharecall|all]...   (default: all)
#
# Knobs (environment): USERS (100000 distinct REGISTERing users),
# SHARECALL_USERS (2000: each new AOR is a sharecall write), REG_RATE
# (REGISTER scenarios offered per second, 20000), CALL_RATE (calls offered
# per second, 3000), CALLS (60000), LIMIT (at most this many scenarios at
# once, 2000); offered rates above capacity make the achieved rate the
# capacity, LATENCY_CALLS (1000), BIN_DIR (sharecall, sharecall-provider
# and sip_latency: target/release), PORT (5090; the front end and Kamailio
# take turns on it), KEEP=1 keeps the work folder.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
scen="$root/tests/sipp"
USERS=${USERS:-100000}
SHARECALL_USERS=${SHARECALL_USERS:-2000}
REG_RATE=${REG_RATE:-20000}
CALL_RATE=${CALL_RATE:-3000}
CALLS=${CALLS:-60000}
LIMIT=${LIMIT:-2000}
LATENCY_CALLS=${LATENCY_CALLS:-1000}
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$root/target}/release}
PORT=${PORT:-5090}
DOMAIN=bench.example

modes=("$@")
[ ${#modes[@]} -eq 0 ] && modes=(all)
[ "${modes[0]}" = all ] && modes=(kamailio plaintext sharecall)
for m in "${modes[@]}"; do
	case $m in kamailio | plaintext | sharecall) ;; *)
		echo "usage: $0 [kamailio|plaintext|sharecall|all]..." >&2
		exit 2
		;;
	esac
done

# Nothing is installed silently: say what is missing and stop.
missing=()
command -v sipp >/dev/null || missing+=(sip-tester)
for m in "${modes[@]}"; do
	[ "$m" = kamailio ] && ! command -v kamailio >/dev/null && missing+=(kamailio)
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "missing: ${missing[*]}; install with: apt-get install -y ${missing[*]}" >&2
	exit 1
fi
need_bin() {
	[ -x "$BIN_DIR/$1" ] || {
		echo "$BIN_DIR/$1 not built: cargo build --release -p sharecall-cli -p sharecall-provider -p sharecall-benches (or set BIN_DIR)" >&2
		exit 1
	}
}
latency_bin=
if [ -x "$BIN_DIR/sip_latency" ]; then latency_bin="$BIN_DIR/sip_latency"; fi
for m in "${modes[@]}"; do
	case $m in plaintext) need_bin sharecall ;; sharecall) need_bin sharecall; need_bin sharecall-provider ;; esac
done

work=$(mktemp -d /tmp/sharecall-sip-bench.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ "${KEEP:-0}" = 1 ]; then echo "work folder kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
stop() { # stop PID: ends one process this script started
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

now() { date +%s.%N; }
# A free UDP+TCP port on loopback, from a range of our own.
next_port=$((PORT + 100))
free_port() {
	while :; do
		next_port=$((next_port + 1))
		if ! (ss -Hlnu "sport = :$next_port"; ss -Hlnt "sport = :$next_port") 2>/dev/null | grep -q .; then
			echo "$next_port"
			return
		fi
	done
}

# The last value of column NAME in a sipp -trace_stat file.
stat_col() {
	awk -F';' -v name="$2" 'NR==1 { for (i = 1; i <= NF; i++) if ($i == name) c = i; next }
		NF > 1 { v = $c } END { print (v == "" ? 0 : v) }' "$1"
}

# Injection files: every user is uNNNNNN with password pw-uNNNNNN.
gen_users() { # gen_users N FILE
	awk -v n="$1" -v d="$DOMAIN" 'BEGIN { print "SEQUENTIAL";
		for (i = 1; i <= n; i++) { u = sprintf("u%06d", i);
			printf "%s;%s;[authentication username=%s password=pw-%s]\n", u, d, u, u } }' >"$2"
}
user_csv() { # user_csv NAME FILE
	printf 'SEQUENTIAL\n%s;%s;[authentication username=%s password=pw-%s]\n' "$1" "$DOMAIN" "$1" "$1" >"$2"
}

# -recv_timeout: a scenario waiting 10 s for a message fails instead of
# staying open (under overload a lost final answer would hold it forever).
sipp_common=(-nostdin -i 127.0.0.1 -trace_stat -fd 1 -trace_err -recv_timeout 10000)
# The global bound of a load run of N scenarios: as if only 50/s succeeded.
run_timeout() { awk -v n="$1" 'BEGIN { printf "%ds", n / 50 + 60 }'; }

# register_load TARGET N: REGISTER/s with N distinct users (each scenario
# is REGISTER -> 401 -> REGISTER with digest -> 200).
register_load() {
	local target=$1 n=$2 d="$work/reg-$3"
	mkdir -p "$d"
	gen_users "$n" "$d/users.csv"
	local t0 t1 rc=0
	t0=$(now)
	(cd "$d" && sipp -sf "$scen/register.xml" -inf "$d/users.csv" -auth_uri "$DOMAIN" \
		-r "$REG_RATE" -l "$LIMIT" -m "$n" -p "$(free_port)" -stf "$d/stat.csv" \
		-timeout "$(run_timeout "$n")" "${sipp_common[@]}" "$target" >/dev/null 2>&1 </dev/null) || rc=$?
	t1=$(now)
	local ok fail
	ok=$(stat_col "$d/stat.csv" 'SuccessfulCall(C)')
	fail=$(stat_col "$d/stat.csv" 'FailedCall(C)')
	reg_rate=$(awk -v ok="$ok" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f", ok / (t1 - t0) }')
	reg_detail="$ok ok, $fail failed, sipp exit $rc"
}

# call_load TARGET NAME: calls/s, one registered sipp UAS (uas.xml) called
# by one sipp UAC (uac_call.xml: INVITE -> 407 -> ACK -> INVITE with
# digest -> 180/200 -> ACK -> BYE -> 200, no pause).
call_load() {
	local target=$1 d="$work/calls-$2"
	mkdir -p "$d"
	local p
	p=$(free_port)
	user_csv callee "$d/callee.csv"
	printf 'SEQUENTIAL\ncaller;%s;[authentication username=caller password=pw-caller];callee;%s\n' \
		"$DOMAIN" "$DOMAIN" >"$d/calls.csv"
	(cd "$d" && sipp -sf "$scen/register.xml" -inf "$d/callee.csv" -auth_uri "$DOMAIN" -m 1 -p "$p" \
		-stf "$d/reg.csv" -timeout 30s -timeout_error "${sipp_common[@]}" "$target" >/dev/null 2>&1 </dev/null) || {
		call_rate=0
		call_detail="callee did not register"
		return
	}
	# No -m: a stray retransmission would count as a call and end it early.
	(cd "$d" && exec sipp -sf "$scen/uas.xml" -p "$p" -stf "$d/uas.csv" \
		-timeout "$(run_timeout "$CALLS")" "${sipp_common[@]}" >/dev/null 2>&1 </dev/null) &
	local uas=$!
	pids+=("$uas")
	sleep 0.5
	local t0 t1 rc=0
	t0=$(now)
	(cd "$d" && sipp -sf "$scen/uac_call.xml" -inf "$d/calls.csv" -auth_uri "callee@$DOMAIN" \
		-r "$CALL_RATE" -l "$LIMIT" -m "$CALLS" -d 0 -pause_msg_ign -p "$(free_port)" -stf "$d/uac.csv" \
		-timeout "$(run_timeout "$CALLS")" "${sipp_common[@]}" "$target" >/dev/null 2>&1 </dev/null) || rc=$?
	t1=$(now)
	stop "$uas"
	local ok fail
	ok=$(stat_col "$d/uac.csv" 'SuccessfulCall(C)')
	fail=$(stat_col "$d/uac.csv" 'FailedCall(C)')
	call_rate=$(awk -v ok="$ok" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f", ok / (t1 - t0) }')
	call_detail="$ok ok, $fail failed, sipp exit $rc"
}

latency() { # latency TARGET
	if [ -z "$latency_bin" ]; then
		lat="n/a (build sip_latency)"
		return
	fi
	local out
	if out=$("$latency_bin" --target "$1" --domain "$DOMAIN" --caller lat-caller --callee lat-callee \
		--calls "$LATENCY_CALLS" 2>"$work/latency.err"); then
		lat=$(sed -E 's/.*p50=([0-9.]+) p90=[0-9.]+ p99=([0-9.]+).*/\1 \/ \2/' <<<"$out")
		echo "  $out" >&2
	else
		lat="failed: $(tail -1 "$work/latency.err")"
	fi
}

# --- Kamailio -------------------------------------------------------------
start_kamailio() { # start_kamailio EXTRA-DEFINES...
	local args=(-f "$here/kamailio.cfg" -A WITH_AUTH -A "PORT=$PORT" -A "REDIRECT_PORT=$((PORT + 1))")
	for a in "$@"; do args+=(-A "$a"); done
	kamailio "${args[@]}" -DD -E -m 1024 -M 32 >>"$work/kamailio.log" 2>&1 &
	kam=$!
	pids+=("$kam")
	# Ready once it holds its UDP and TCP sockets.
	for _ in $(seq 100); do
		sleep 0.1
		if ss -Hlnu "sport = :$PORT" | grep -q . && ss -Hlnt "sport = :$PORT" | grep -q .; then
			sleep 0.3
			return
		fi
		kill -0 "$kam" 2>/dev/null || break
	done
	echo "kamailio did not start:" >&2
	tail -20 "$work/kamailio.log" >&2
	exit 1
}

# --- the front end --------------------------------------------------------
# write_users N FILE [KEY]: users.toml with uNNNNNN, callee, caller and the
# latency harness's two users; with KEY, all share that account key.
write_users() {
	awk -v n="$1" -v d="$DOMAIN" -v key="${3:-}" 'function u(name) {
			printf "[[user]]\nname = \"%s\"\ndomain = \"%s\"\npassword = \"pw-%s\"\n", name, d, name
			if (key != "") printf "account_key = \"%s\"\n", key
			print "" }
		BEGIN { u("callee"); u("caller"); u("lat-caller"); u("lat-callee");
			for (i = 1; i <= n; i++) u(sprintf("u%06d", i)) }' >"$2"
}

start_front_end() { # start_front_end DIR: runs DIR/sip.toml
	local d=$1
	"$BIN_DIR/sharecall" sip --config "$d/sip.toml" >"$d/stdout.log" 2>"$d/stderr.log" &
	fe=$!
	pids+=("$fe")
	for _ in $(seq 600); do
		grep -q '^sharecall sip: listening' "$d/stdout.log" 2>/dev/null && return
		kill -0 "$fe" 2>/dev/null || break
		sleep 0.1
	done
	echo "the front end did not start:" >&2
	tail -20 "$d/stderr.log" >&2
	exit 1
}

fe_config() { # fe_config DIR LOCATION [SHARECALL-SECTION]
	cat >"$1/sip.toml" <<-EOF
		[sip]
		domains = ["$DOMAIN"]
		location = "$2"
		users = "users.toml"

		[listen]
		udp = "127.0.0.1:$PORT"
		tcp = "127.0.0.1:$PORT"

		[auth]
		# sipp 3.6 answers the first challenge and knows only MD5.
		algorithms = ["MD5", "SHA-256"]

		${3:-}
	EOF
}

# --- a local three-provider cluster (as tests/src/cluster.rs) -------------
start_cluster() {
	local d="$work/cluster" base=$((PORT + 300)) i j
	mkdir -p "$d"
	local fp=()
	for i in 0 1 2; do
		fp[i]=$("$BIN_DIR/sharecall-provider" init --data-dir "$d/p$i" | sed -n 's/^fingerprint: //p')
	done
	for i in 0 1 2; do
		local c=$((base + 4 * i))
		{
			printf 'id = %d\ndata_dir = "%s"\n\n[listen]\ncontrol = "127.0.0.1:%d"\nsmc = "127.0.0.1:%d"\nadmin = "127.0.0.1:%d"\napi = "127.0.0.1:%d"\n\n' \
				"$i" "$d/p$i" "$c" $((c + 1)) $((c + 2)) $((c + 3))
			for j in 0 1 2; do
				[ "$j" = "$i" ] && continue
				local cj=$((base + 4 * j))
				printf '[[peers]]\nid = %d\ncontrol = "127.0.0.1:%d"\nsmc = "127.0.0.1:%d"\nfingerprint = "%s"\n\n' \
					"$j" "$cj" $((cj + 1)) "${fp[j]}"
			done
			printf '[accounts]\nenrollment = "open"\nrate_per_second = 1000000\nburst = 1000000\n\n[log]\nfilter = "warn"\n'
		} >"$d/p$i.toml"
	done
	for i in 0 1 2; do
		"$BIN_DIR/sharecall-provider" run --config "$d/p$i.toml" >/dev/null 2>"$d/p$i.log" &
		pids+=($!)
	done
	providers=""
	for i in 0 1 2; do
		local admin=$((base + 4 * i + 2))
		local up=0
		for _ in $(seq 300); do
			if curl -sf "http://127.0.0.1:$admin/v1/admin/peers" >/dev/null 2>&1; then up=1; break; fi
			sleep 0.1
		done
		[ "$up" = 1 ] || { echo "provider $i did not come up:" >&2; tail -20 "$d/p$i.log" >&2; exit 1; }
		providers+="${providers:+,}https://127.0.0.1:$((base + 4 * i + 3))#sha256=${fp[i]}"
	done
	provider_list="\"${providers//,/\", \"}\""
}

enrolled_key() { # enrolled_key FILE
	HOME="$work" "$BIN_DIR/sharecall" keygen --key "$1" >/dev/null
	HOME="$work" "$BIN_DIR/sharecall" enroll --key "$1" --providers "$providers" >/dev/null
}

declare -A R_REG R_REGD R_CALL R_CALLD R_LAT
for m in "${modes[@]}"; do
	echo "== $m" >&2
	target=127.0.0.1:$PORT
	case $m in
	kamailio)
		start_kamailio
		register_load "$target" "$USERS" "$m"
		call_load "$target" "$m"
		stop "$kam"
		# The latency harness answers SHA-256 challenges only.
		start_kamailio WITH_SHA256
		latency "$target"
		stop "$kam"
		;;
	plaintext)
		d="$work/fe-plaintext"
		mkdir -p "$d"
		write_users "$USERS" "$d/users.toml"
		fe_config "$d" plaintext
		start_front_end "$d"
		register_load "$target" "$USERS" "$m"
		call_load "$target" "$m"
		latency "$target"
		stop "$fe"
		;;
	sharecall)
		start_cluster
		d="$work/fe-sharecall"
		mkdir -p "$d/keys"
		enrolled_key "$d/keys/front-end.key"
		enrolled_key "$d/keys/users.key"
		write_users "$SHARECALL_USERS" "$d/users.toml" "$d/keys/users.key"
		fe_config "$d" sharecall "[sharecall]
providers = [$provider_list]
account_key = \"$d/keys/front-end.key\""
		start_front_end "$d"
		register_load "$target" "$SHARECALL_USERS" "$m"
		call_load "$target" "$m"
		latency "$target"
		stop "$fe"
		;;
	esac
	R_REG[$m]=$reg_rate R_REGD[$m]=$reg_detail R_CALL[$m]=$call_rate R_CALLD[$m]=$call_detail R_LAT[$m]=$lat
	echo "  REGISTER/s $reg_rate ($reg_detail); calls/s $call_rate ($call_detail); INVITE->200 p50/p99 ms $lat" >&2
done

echo
echo "SIP benchmark on $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ); REG_RATE=$REG_RATE CALL_RATE=$CALL_RATE CALLS=$CALLS LIMIT=$LIMIT"
printf '%-22s %12s %10s %22s  %s\n' target REGISTER/s calls/s 'INVITE->200 p50/p99' 'details'
for m in "${modes[@]}"; do
	printf '%-22s %12s %10s %22s  %s\n' "$m" "${R_REG[$m]}" "${R_CALL[$m]}" "${R_LAT[$m]}" \
		"reg: ${R_REGD[$m]}; calls: ${R_CALLD[$m]}"
done
if [ -n "${R_REG[sharecall]:-}" ] && [ -n "${R_REG[plaintext]:-}" ]; then
	ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
	printf '%-22s %12s %10s\n' sharecall/plaintext "$(ratio "${R_REG[sharecall]}" "${R_REG[plaintext]}")" \
		"$(ratio "${R_CALL[sharecall]}" "${R_CALL[plaintext]}")"
fi
