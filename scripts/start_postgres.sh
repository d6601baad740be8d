#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on 127.0.0.1 (a free port) for the storage tests and
# print its URL. Installs the server from Debian's packages when it is missing.
set -euo pipefail
PGPORT=${PGPORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
fi
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGDATA=$(mktemp -d /tmp/vitune-pg.XXXXXX)
chown postgres "$PGDATA"
run_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
run_pg "$PGBIN/initdb -D $PGDATA -A trust -U postgres" >/dev/null
run_pg "$PGBIN/pg_ctl -D $PGDATA -o '-p $PGPORT -k /tmp -c listen_addresses=127.0.0.1' -l $PGDATA/log -w start" >/dev/null
echo "postgresql+psycopg2://postgres@127.0.0.1:$PGPORT/postgres"
