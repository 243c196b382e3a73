#!/bin/sh
# Init container of a service's PostgreSQL pod, run before the server starts (rendered into the
# <service>-postgresql-setup ConfigMap):
#  - on the first start, initialises the data directory with the superuser `postgres`, which has no
#    password and so can only log in over the pod-local socket;
#  - on every start, makes the service's role a plain login role (no SUPERUSER, CREATEDB, CREATEROLE,
#    REPLICATION or BYPASSRLS) with the password of its Secret, owner of the service's database, which no
#    other role may open; `postgres` and `template1` are closed to ordinary roles; the exporter's `metrics`
#    role (pg_monitor) logs in over the socket.
# Idempotent, so a password changed in the Secret takes effect on the next restart of the pod.
set -eu
: "${PGDATA:?}" "${DB_NAME:?}" "${DB_ROLE:?}" "${DB_PASSWORD:?}"
SOCKET=/var/run/postgresql

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  initdb --username=postgres --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 \
    -D "$PGDATA" >/dev/null
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "postgres-setup: data directory initialised in $PGDATA"
fi

pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=$SOCKET" -w -t 300 start >/dev/null
trap 'pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null' EXIT

psql -v ON_ERROR_STOP=1 -q -X -h "$SOCKET" -U postgres -d postgres \
  -v role="$DB_ROLE" -v db="$DB_NAME" -v password="$DB_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
ALTER ROLE :"role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'password';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
ALTER DATABASE :"db" OWNER TO :"role";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
REVOKE ALL ON DATABASE postgres FROM PUBLIC;
REVOKE ALL ON DATABASE template1 FROM PUBLIC;
SELECT 'CREATE ROLE metrics LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'metrics') \gexec
GRANT pg_monitor TO metrics;
GRANT CONNECT ON DATABASE postgres TO metrics;
SQL
echo "postgres-setup: role $DB_ROLE (no superuser) owns database $DB_NAME"
