#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster for the service tests and print its URL (the only line on stdout).
#
#   export PRECIMED_TEST_PG_URL="$(scripts/start_postgres.sh)"
#
# Installs PostgreSQL with apt if no server binaries are found (needs root or passwordless sudo), creates a
# cluster under /tmp on a free loopback port, owned by and run as the `postgres` user when run as root, with a
# random password (scram-sha-256), and creates the database `precimed_test`. Progress goes to stderr. The cluster
# folder holds stop.sh; the cluster is not stopped automatically.
set -euo pipefail

log() { echo "start_postgres: $*" >&2; }

find_bin() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then dirname "$(command -v initdb)"; return 0; fi
  return 1
}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi

if ! BIN="$(find_bin)"; then
  log "no PostgreSQL server found; installing with apt"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >&2
  $SUDO apt-get install -y -qq postgresql >&2
  BIN="$(find_bin)" || { log "PostgreSQL installed but initdb/pg_ctl not found"; exit 1; }
fi
log "using $BIN ($("$BIN/postgres" --version))"

PORT="${PGPORT_TEST:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
BASE="$(mktemp -d /tmp/precimed-pg.XXXXXX)"
PASSWORD="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
printf '%s\n' "$PASSWORD" > "$BASE/pwfile"

RUN=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  chown -R postgres: "$BASE"
  if command -v runuser >/dev/null; then RUN=(runuser -u postgres --); else RUN=(su postgres -s /bin/sh -c); fi
fi
chmod 700 "$BASE"

as_pg() {
  if [ "${#RUN[@]}" -eq 0 ]; then "$@"
  elif [ "${RUN[0]}" = "runuser" ]; then "${RUN[@]}" "$@"
  else "${RUN[@]}" "$(printf '%q ' "$@")"; fi
}

as_pg "$BIN/initdb" -D "$BASE/data" -U postgres --pwfile="$BASE/pwfile" --auth=scram-sha-256 \
  --encoding=UTF8 --locale=C >"$BASE/initdb.log" 2>&1 || { cat "$BASE/initdb.log" >&2; exit 1; }
rm -f "$BASE/pwfile"
as_pg "$BIN/pg_ctl" -D "$BASE/data" -l "$BASE/server.log" -w -t 60 \
  -o "-p $PORT -k $BASE -c listen_addresses=127.0.0.1" start >&2 || { cat "$BASE/server.log" >&2; exit 1; }
PGPASSWORD="$PASSWORD" "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres precimed_test

cat >"$BASE/stop.sh" <<EOF
#!/usr/bin/env bash
$(printf '%q ' "${RUN[@]}") $BIN/pg_ctl -D $BASE/data -m fast stop
EOF
chmod +x "$BASE/stop.sh"
log "cluster in $BASE on 127.0.0.1:$PORT; stop it with $BASE/stop.sh"
echo "postgresql://postgres:$PASSWORD@127.0.0.1:$PORT/precimed_test"
