#!/bin/bash
# A stand-in for the official postgres image's entrypoint: POSTGRES_USER/PASSWORD/DB, initdb on an empty volume.
set -e
mkdir -p "$PGDATA" /run/postgresql && chown -R postgres:postgres "$PGDATA" /run/postgresql && chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "$POSTGRES_PASSWORD" > /tmp/pw
  gosu postgres initdb -U "$POSTGRES_USER" --pwfile=/tmp/pw --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA" >/dev/null
  rm /tmp/pw
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  gosu postgres pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  gosu postgres createdb -U "$POSTGRES_USER" "$POSTGRES_DB"
  gosu postgres pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec gosu postgres postgres -D "$PGDATA" -c listen_addresses='*'
