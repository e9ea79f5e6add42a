-- Dagster's own storage lives in a database of its own on the same server.
CREATE DATABASE dagster OWNER coinfrs;
