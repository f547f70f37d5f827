# Sourced by the scripts that start the installed app (test-deb.sh,
# build-release-deb.sh): a private X display (Xvfb) and D-Bus session bus, so
# the app never touches the caller's desktop. The caller defines `work` (a temp
# folder) and `pids` (an array): the process group of every server started
# here is appended to `pids`, for the caller's cleanup to kill.

# A private X server. -displayfd names the display once the server accepts
# connections; a loaded machine can take a while to get there, so wait up to a
# minute, check that the display answers, and say why when it does not.
start_x() {
  : >"$work/display"
  setsid Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$work/display" 2>"$work/xvfb.log" &
  local xpid=$!
  pids+=("$xpid")
  for _ in $(seq 600); do
    [ -s "$work/display" ] && break
    kill -0 "$xpid" 2>/dev/null || break
    sleep 0.1
  done
  local n
  n=$(tr -dc '0-9' <"$work/display")
  if [ -z "$n" ]; then
    echo "Xvfb did not report a display; its log:" >&2
    cat "$work/xvfb.log" >&2
    return 1
  fi
  export DISPLAY=":$n"
  for _ in $(seq 100); do
    xdpyinfo >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "Xvfb reported $DISPLAY but it does not answer; its log:" >&2
  cat "$work/xvfb.log" >&2
  return 1
}

# The display (two tries), GTK pinned to it, and a session bus.
start_private_session() {
  start_x || start_x || { echo "FAIL: could not start a private X display (Xvfb, package xvfb)" >&2; return 1; }
  # GTK must use that display, not a Wayland session the caller may have.
  unset WAYLAND_DISPLAY
  export GDK_BACKEND=x11
  setsid dbus-daemon --session --nofork --print-address=1 >"$work/bus" 2>"$work/dbus.log" &
  pids+=($!)
  for _ in $(seq 300); do [ -s "$work/bus" ] && break; sleep 0.1; done
  [ -s "$work/bus" ] || { echo "FAIL: dbus-daemon did not start; its log:" >&2; cat "$work/dbus.log" >&2; return 1; }
  DBUS_SESSION_BUS_ADDRESS="$(head -n1 "$work/bus")"
  export DBUS_SESSION_BUS_ADDRESS
}
