-- Forewarm's three ClickHouse users, for servers with SQL access control
-- (ClickHouse 20.5 and later: what the Altinity operator, the official
-- images and ClickHouse Cloud run). Run as an administrator after
-- replacing the passwords (and the database name, if not forewarm). In
-- cluster mode the tables are <name> (Distributed) in front of
-- <name>_local (replicated): both need the grant, as below; create the
-- users on every replica (add ON CLUSTER '<cluster>' after each user or
-- grant list) unless your users live in a replicated user directory.
-- ClickHouse 18.16 has no SQL access control: see users-example.xml.

-- The migration (`starter migrate`, the Kubernetes Job): the only user
-- that changes the schema.
CREATE USER IF NOT EXISTS forewarm_migrate IDENTIFIED WITH sha256_password BY 'change-me';
GRANT CREATE DATABASE, CREATE TABLE, CREATE VIEW, DROP TABLE, DROP VIEW, ALTER, SELECT, INSERT ON forewarm.* TO forewarm_migrate;
GRANT CLUSTER ON *.* TO forewarm_migrate; -- ON CLUSTER DDL (servers 22.10+ check it)

-- The workers and the operator's CLI: read and write the history, delete
-- the rows of a failed trace load; never change the schema.
CREATE USER IF NOT EXISTS forewarm IDENTIFIED WITH sha256_password BY 'change-me';
GRANT SELECT, INSERT ON forewarm.* TO forewarm;
GRANT ALTER DELETE ON forewarm.activity TO forewarm;
GRANT ALTER DELETE ON forewarm.activity_local TO forewarm;
GRANT ALTER DELETE ON forewarm.app_profiles TO forewarm;
GRANT ALTER DELETE ON forewarm.app_profiles_local TO forewarm;
GRANT CLUSTER ON *.* TO forewarm; -- the delete runs ON CLUSTER in cluster mode

-- The host agents: register the host, push its metrics, read the schema
-- version. Nothing else: a compromised host can neither read the history
-- nor change it.
CREATE USER IF NOT EXISTS forewarm_agent IDENTIFIED WITH sha256_password BY 'change-me';
GRANT INSERT ON forewarm.hosts TO forewarm_agent;
GRANT INSERT ON forewarm.hosts_local TO forewarm_agent;
GRANT INSERT ON forewarm.host_metrics TO forewarm_agent;
GRANT INSERT ON forewarm.host_metrics_local TO forewarm_agent;
GRANT SELECT(version) ON forewarm.schema_migrations TO forewarm_agent;
GRANT SELECT(version) ON forewarm.schema_migrations_local TO forewarm_agent;
