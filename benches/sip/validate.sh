#!/usr/bin/env bash
# Runs every scenario in tests/sipp/ once against a local Kamailio
# (benches/sip/kamailio.cfg with digest authentication), to check the
# scenarios themselves: each must end with sipp's exit code 0.
#
#   benches/sip/validate.sh            # Kamailio on 127.0.0.1:5090/5091
#   PORT=5190 benches/sip/validate.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
scen=$(cd "$here/../../tests/sipp" && pwd)
port=${PORT:-5090}
rport=$((port + 1))
for tool in sipp kamailio; do
	command -v "$tool" >/dev/null || {
		echo "$tool not found: apt-get install -y sip-tester kamailio" >&2
		exit 1
	}
done

work=$(mktemp -d)
kam_pid=
cleanup() {
	[ -n "$kam_pid" ] && kill "$kam_pid" 2>/dev/null && wait "$kam_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

kamailio -f "$here/kamailio.cfg" -A WITH_AUTH -A "PORT=$port" -A "REDIRECT_PORT=$rport" \
	-DD -E -m 256 >"$work/kamailio.log" 2>&1 &
kam_pid=$!
# Ready once it holds its UDP and TCP sockets.
for _ in $(seq 100); do
	sleep 0.1
	if ss -Hlnu "sport = :$port" | grep -q . && ss -Hlnt "sport = :$port" | grep -q .; then
		sleep 0.3
		break
	fi
	kill -0 "$kam_pid" 2>/dev/null || { cat "$work/kamailio.log" >&2; exit 1; }
done

cd "$work"
fail=0
# check NAME EXPECTED_RC sipp-args...
check() {
	local name=$1; shift
	local rc=0
	timeout 30 sipp "$@" -timeout 15s -timeout_error -nostdin -trace_err >/dev/null 2>&1 </dev/null || rc=$?
	if [ "$rc" = 0 ]; then echo "ok    $name"; else
		echo "FAIL  $name (sipp exit $rc)"; cat ./*_errors.log 2>/dev/null | tail -25; fail=1
	fi
	rm -f ./*_errors.log
}
# uas NAME SCENARIO PORT: a callee in the background; its rc in NAME.rc.
uas() {
	( rc=0; timeout 30 sipp -sf "$scen/$2" -p "$3" -m 1 -timeout 20s -timeout_error -nostdin \
		>/dev/null 2>&1 </dev/null || rc=$?; echo "$rc" >"$work/$1.rc" ) &
	sleep 0.5
}
waitrc() {
	for _ in $(seq 100); do [ -f "$work/$1.rc" ] && break; sleep 0.1; done
	local rc; rc=$(cat "$work/$1.rc" 2>/dev/null || echo timeout)
	if [ "$rc" = 0 ]; then echo "ok    $1"; else echo "FAIL  $1 (sipp exit $rc)"; fail=1; fi
}
target=127.0.0.1:$port
# Each callee is a user of its own, so no stale binding of an earlier step
# is forked to. user USER: USER.csv (register), to-USER.csv (alice calls).
user() {
	printf 'SEQUENTIAL\n%s;a.example;[authentication username=%s password=pw-%s]\n' "$1" "$1" "$1" >"$work/$1.csv"
	printf 'SEQUENTIAL\nalice;a.example;[authentication username=alice password=pw-alice];%s;a.example\n' "$1" >"$work/to-$1.csv"
}
for u in bob carol dave erin frank; do user "$u"; done

check register "-sf" "$scen/register.xml" -inf "$scen/users.csv" -auth_uri a.example -m 2 -p 5172 "$target"
check register_refused "-sf" "$scen/register_refused.xml" -inf "$scen/wrong.csv" -auth_uri a.example -m 1 -p 5173 "$target"

check "register bob" -sf "$scen/register.xml" -inf "$scen/bob.csv" -auth_uri a.example -m 1 -p 5172 "$target"
uas uas 'uas.xml' 5172
check uac_call -sf "$scen/uac_call.xml" -inf "$scen/calls.csv" -auth_uri bob@a.example -m 1 -d 100 -pause_msg_ign -p 5174 "$target"
waitrc uas

check "register carol (tcp)" -sf "$scen/register.xml" -inf "$work/carol.csv" -auth_uri a.example -m 1 -t t1 -p 5175 "$target"
( rc=0; timeout 30 sipp -sf "$scen/uas.xml" -t t1 -p 5175 -m 1 -timeout 20s -timeout_error -nostdin \
	>/dev/null 2>&1 </dev/null || rc=$?; echo "$rc" >"$work/uas_tcp.rc" ) &
sleep 0.5
check "uac_call (tcp)" -sf "$scen/uac_call.xml" -inf "$work/to-carol.csv" -auth_uri carol@a.example -m 1 -d 100 -pause_msg_ign -t t1 -p 5176 "$target"
waitrc uas_tcp

check "register dave" -sf "$scen/register.xml" -inf "$work/dave.csv" -auth_uri a.example -m 1 -p 5178 "$target"
uas uas_cancel 'uas_cancel.xml' 5178
check uac_cancel -sf "$scen/uac_cancel.xml" -inf "$work/to-dave.csv" -auth_uri dave@a.example -m 1 -p 5174 "$target"
waitrc uas_cancel

check uac_redirect -sf "$scen/uac_redirect.xml" -inf "$scen/calls.csv" -auth_uri bob@a.example -m 1 -p 5174 127.0.0.1:"$rport"
check uac_404 -sf "$scen/uac_404.xml" -inf "$scen/calls_404.csv" -auth_uri nobody@a.example -m 1 -p 5174 "$target"

( rc=0; timeout 30 sipp -sf "$scen/uas_registered.xml" -oocsf "$scen/uas.xml" -inf "$work/erin.csv" \
	-auth_uri a.example -m 1 -d 3000 -p 5177 -timeout 20s -timeout_error -nostdin "$target" \
	>/dev/null 2>&1 </dev/null || rc=$?; echo "$rc" >"$work/uas_registered.rc" ) &
sleep 0.7
check "uac_call to uas_registered" -sf "$scen/uac_call.xml" -inf "$work/to-erin.csv" -auth_uri erin@a.example -m 1 -d 100 -pause_msg_ign -p 5174 "$target"
waitrc uas_registered

exit $fail
