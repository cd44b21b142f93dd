#!/bin/sh
# xinetd's internal TCP echo service (type = INTERNAL, id = echo-stream) on a chosen port,
# in the foreground (-dontfork) so that whoever starts this script owns xinetd's process.
#
#     xinetd_echo.sh PORT
#
# The configuration follows /etc/xinetd.d/echo (Debian's xinetd package) and xinetd.conf(5).
# It is written to ${TMPDIR:-/tmp}/xinetd-echo.PORT.conf (one small file per port, rewritten on
# each start: xinetd reopens its standard input on /dev/null before reading its configuration,
# so it cannot come from a pipe or an unlinked file); xinetd replaces this shell (exec), so the
# caller's pid is xinetd's, and it logs to its standard error.
set -eu
port=${1:?usage: xinetd_echo.sh PORT}
conf="${TMPDIR:-/tmp}/xinetd-echo.$port.conf"
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
	id		= echo-stream
	socket_type	= stream
	protocol	= tcp
	wait		= no
	user		= $(id -un)
	bind		= 127.0.0.1
	port		= $port
	flags		= REUSE
}
CONF
mv -f "$conf.$$" "$conf"
exec /usr/sbin/xinetd -dontfork -f "$conf" -filelog /dev/stderr
