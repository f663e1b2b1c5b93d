#!/usr/bin/env bash
# PostgreSQL 15 from the machine's Debian binaries, with logical replication.
#   postgres.sh start | stop | status | restart
#   postgres.sh kill           SIGKILL the server and its backends (a crash)
#   postgres.sh psql ARGS...   psql as the application role on its database
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR="$SLUICE_LOCAL/postgres"
DATA="$DIR/data"
RUN="$DIR/run"
PGBIN="${SLUICE_PGBIN:-/usr/lib/postgresql/15/bin}"
# The application role and database the services and tests use.
DB_USER=sluice
DB_PASSWORD=sluice
DB_NAME=sluice
# The schema registry's storage: schema ids must survive a registry restart,
# or old messages would point at ids that now name other schemas.
REGISTRY_DB=schema_registry

# Postgres refuses to run as root; on a root shell (CI, containers) the
# server runs as the Debian package's postgres user and owns $DIR.
as_pg() {
  if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

port() { env_get "$DIR/endpoint.env" SLUICE_PG_PORT; }
ready() { [[ -n "$(port)" ]] && "$PGBIN/pg_isready" -q -h "$RUN" -p "$(port)"; }

init_cluster() {
  log "initdb in $DATA"
  as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 || die "initdb failed; see $DIR/initdb.log"
  cat >> "$DATA/postgresql.conf" <<CONF

# --- Sluice local stack ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$RUN'
# outbox-relay streams the outbox through a logical replication slot.
wal_level = logical
max_replication_slots = 32
max_wal_senders = 32
max_connections = 200
shared_buffers = 128MB
fsync = on
CONF
  # Replication connections match "replication", not a database name.
  echo "host replication all 127.0.0.1/32 scram-sha-256" >> "$DATA/pg_hba.conf"
}

create_app_role() {
  as_pg "$PGBIN/psql" -q -h "$RUN" -p "$(port)" -U postgres -d postgres -v ON_ERROR_STOP=1 <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
    CREATE ROLE $DB_USER LOGIN REPLICATION CREATEDB PASSWORD '$DB_PASSWORD';
  END IF;
END \$\$;
SELECT 'CREATE DATABASE $DB_NAME OWNER $DB_USER' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB_NAME')\gexec
SELECT 'CREATE DATABASE $REGISTRY_DB OWNER $DB_USER' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$REGISTRY_DB')\gexec
SQL
}

start() {
  [[ -x "$PGBIN/postgres" ]] || die "PostgreSQL 15 server not found in $PGBIN (install postgresql-15)"
  mkdir -p "$DIR" "$RUN"
  [[ "$(id -u)" == 0 ]] && chown postgres: "$DIR" "$RUN"
  if ready && [[ "$(as_pg "$PGBIN/psql" -h "$RUN" -p "$(port)" -U postgres -d postgres -tAc 'SHOW ssl')" != on ]]; then
    log "postgres runs without TLS (started by an older stack.sh); restarting it"
    stop
  fi
  if ready; then log "postgres already runs on port $(port)"; create_app_role; return 0; fi
  [[ -f "$DATA/PG_VERSION" ]] || init_cluster

  local pg_port; pg_port="$(port)"
  if [[ -z "$pg_port" ]] || port_in_use "$pg_port"; then pg_port="$(free_port)"; fi
  { echo "SLUICE_PG_PORT=$pg_port"
    echo "SLUICE_PG_SOCKET_DIR=$RUN"
    echo "SLUICE_DATABASE_URL=postgres://$DB_USER:$DB_PASSWORD@127.0.0.1:$pg_port/$DB_NAME"
    echo "SLUICE_REGISTRY_JDBC_URL=jdbc:postgresql://127.0.0.1:$pg_port/$REGISTRY_DB"; } > "$DIR/endpoint.env"

  # TLS with the stack's throwaway CA (tls.sh); plain connections are still
  # taken, so a client's sslmode decides. Postgres wants its key private.
  local tls="$SLUICE_LOCAL/tls"
  [[ -f "$tls/server.pem" ]] || die "no server certificate in $tls; run deploy/local/tls.sh make"
  install -m 600 "$tls/server.key" "$DIR/server.key"
  install -m 644 "$tls/server.pem" "$DIR/server.pem"
  [[ "$(id -u)" == 0 ]] && chown postgres: "$DIR/server.key" "$DIR/server.pem"
  log "starting postgres on 127.0.0.1:$pg_port (TLS too)"
  # pg_ctl removes a stale postmaster.pid left by a crashed server itself.
  as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$DIR/postgres.log" \
    -o "-p $pg_port -c ssl=on -c ssl_cert_file=$DIR/server.pem -c ssl_key_file=$DIR/server.key" -w -t 60 start >/dev/null \
    || die "postgres did not start; see $DIR/postgres.log"
  create_app_role
  write_stack_env
  log "postgres is ready"
}

stop() {
  [[ -f "$DATA/postmaster.pid" ]] || return 0
  as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 30 stop >/dev/null 2>&1 \
    || as_pg "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
}

# SIGKILL to the postmaster and every backend at once, as when the machine
# or the container dies: no checkpoint, no shutdown record; the next start
# replays the WAL.
crash() {
  [[ -f "$DATA/postmaster.pid" ]] || die "postgres is not running"
  local postmaster; postmaster="$(head -n1 "$DATA/postmaster.pid")"
  # pg_ctl starts the postmaster in a session of its own: its process group
  # is the server, backends forked a moment ago included.
  kill -KILL -- "-$postmaster" 2>/dev/null || kill -KILL "$postmaster" 2>/dev/null || true
  # Until the postmaster is reaped too: while its pid exists, even as a
  # zombie, the next start takes postmaster.pid for a live server's.
  local _
  for _ in $(seq 1 100); do
    [[ -n "$(pgrep -g "$postmaster")" ]] || return 0
    sleep 0.1
  done
  die "postgres processes of group $postmaster outlived SIGKILL for 10 s"
}

status() {
  if ready; then echo "postgres  running  port $(port)  $(env_get "$DIR/endpoint.env" SLUICE_DATABASE_URL)"
  else echo "postgres  stopped"; fi
}

# A shell on the application database, as the services see it.
app_psql() {
  ready || die "postgres is not running; start the stack first"
  PGPASSWORD="$DB_PASSWORD" "$PGBIN/psql" -h 127.0.0.1 -p "$(port)" -U "$DB_USER" -d "$DB_NAME" \
    -v ON_ERROR_STOP=1 "$@"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  kill) crash ;;
  status) status ;;
  psql) shift; app_psql "$@" ;;
  *) die "usage: postgres.sh start|stop|restart|kill|status|psql ARGS" ;;
esac
