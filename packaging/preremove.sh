#!/bin/sh
# Stop natkit-serve when the package is removed (not on upgrade).
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove -o "$1" = 0 ]; then
  systemctl disable --now natkit-serve.service >/dev/null 2>&1 || true
fi
