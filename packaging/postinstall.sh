#!/bin/sh
# natkit package: the service's own system user, and the example config
# readable by it only.
set -e
if ! getent group natkit >/dev/null; then
  groupadd --system natkit
fi
if ! getent passwd natkit >/dev/null; then
  useradd --system --gid natkit --home-dir /var/lib/natkit --no-create-home \
    --shell /usr/sbin/nologin --comment "natkit serve" natkit
fi
chown root:natkit /etc/natkit /etc/natkit/serve.yaml
chmod 0750 /etc/natkit
chmod 0640 /etc/natkit/serve.yaml
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
# The service is not enabled or started: edit /etc/natkit/serve.yaml (every
# password is "change-me-..."), then: systemctl enable --now natkit-serve
