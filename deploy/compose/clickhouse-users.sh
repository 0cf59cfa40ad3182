#!/bin/sh
# First start of the compose ClickHouse: Forewarm's three users from
# deploy/clickhouse/grants.sql, with the passwords given in .env.
set -eu
sed -e "/USER IF NOT EXISTS forewarm_migrate /s/'change-me'/'${FOREWARM_CH_MIGRATE_PASSWORD}'/" \
    -e "/USER IF NOT EXISTS forewarm IDENTIFIED/s/'change-me'/'${FOREWARM_CH_PASSWORD}'/" \
    -e "/USER IF NOT EXISTS forewarm_agent /s/'change-me'/'${FOREWARM_CH_AGENT_PASSWORD}'/" \
    /forewarm/grants.sql \
  | clickhouse client --user "$CLICKHOUSE_USER" --password "$CLICKHOUSE_PASSWORD" --multiquery
