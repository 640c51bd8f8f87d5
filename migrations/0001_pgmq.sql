-- Placeholder: the pgmq-compatible API is written in its own change.
CREATE SCHEMA IF NOT EXISTS pgmq;
