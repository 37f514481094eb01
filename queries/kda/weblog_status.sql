-- KDA application: parse Apache access-log lines with W3C_LOG_PARSE and count the requests and
-- bytes of each HTTP status code per minute (of ROWTIME, the time each line was received). Lines
-- that are not in the common log format parse to a NULL row and are dropped by the first pump.
-- Run: duckstream run queries/kda/weblog_status.sql --source queries/kda/weblog.jsonl --rowtime-from received_at
-- (without --rowtime-from, ROWTIME is the time the file is read and everything lands in one minute)
CREATE OR REPLACE STREAM "PARSED_LOG" (
  host    VARCHAR(64),
  request VARCHAR(256),
  status  INTEGER,
  bytes   BIGINT);

CREATE OR REPLACE PUMP "PARSE_PUMP" AS INSERT INTO "PARSED_LOG"
  SELECT STREAM l.r.COLUMN1, l.r.COLUMN5, l.r.COLUMN6, l.r.COLUMN7
  FROM (SELECT STREAM W3C_LOG_PARSE(log, 'COMMON') AS r
        FROM "SOURCE_SQL_STREAM_001") AS l
  WHERE l.r.COLUMN1 IS NOT NULL;

CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (
  minute_start TIMESTAMP,
  status       INTEGER,
  requests     INTEGER,
  bytes        BIGINT);

CREATE OR REPLACE PUMP "STATUS_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM FLOOR(p.ROWTIME TO MINUTE), status, COUNT(*), SUM(bytes)
  FROM "PARSED_LOG" AS p
  GROUP BY status, FLOOR(p.ROWTIME TO MINUTE);
