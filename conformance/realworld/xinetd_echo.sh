#!/bin/sh
# xinetd's internal echo service (type = INTERNAL) on a chosen port: TCP (id echo-stream), or
# with `dgram` UDP (id echo-dgram), in the foreground (-dontfork) so that whoever starts this
# script owns xinetd's process.
#
#     xinetd_echo.sh PORT [stream|dgram]
#
# The configuration follows /etc/xinetd.d/echo (Debian's xinetd package) and xinetd.conf(5).
# It is written to ${TMPDIR:-/tmp}/xinetd-echo-KIND.PORT.conf (one small file per port, rewritten on
# each start: xinetd reopens its standard input on /dev/null before reading its configuration,
# so it cannot come from a pipe or an unlinked file); xinetd replaces this shell (exec), so the
# caller's pid is xinetd's, and it logs to its standard error.
set -eu
port=${1:?usage: xinetd_echo.sh PORT [stream|dgram]}
kind=${2:-stream}
case "$kind" in
stream) protocol=tcp wait=no ;;
dgram) protocol=udp wait=yes ;;
*) echo "xinetd_echo.sh: stream or dgram, not $kind" >&2; exit 2 ;;
esac
conf="${TMPDIR:-/tmp}/xinetd-echo-$kind.$port.conf"
cat > "$conf.$$" <<CONF
defaults
{
	instances	= UNLIMITED
	per_source	= UNLIMITED
	cps		= 100000 1
}

service echo
{
	type		= INTERNAL UNLISTED
	id		= echo-$kind
	socket_type	= $kind
	protocol	= $protocol
	wait		= $wait
	user		= $(id -un)
	bind		= 127.0.0.1
	port		= $port
	flags		= REUSE
}
CONF
mv -f "$conf.$$" "$conf"
exec /usr/sbin/xinetd -dontfork -f "$conf" -filelog /dev/stderr
