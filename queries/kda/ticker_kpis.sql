-- KDA application: per-ticker KPIs over 1-minute tumbling windows, written as it was for
-- Kinesis Data Analytics (the console's demo stream, SOURCE_SQL_STREAM_001, a pump into
-- DESTINATION_SQL_STREAM). A window is emitted when ROWTIME passes the end of its minute, and the
-- last one when a bounded input ends.
-- Run: duckstream run queries/kda/ticker_kpis.sql --source 'demo:ticker?rows=20000'
-- Replay a recorded file the same way every run (ROWTIME taken from EVENT_TIME):
--      duckstream run queries/kda/ticker_kpis.sql --source trades.jsonl --rowtime-from EVENT_TIME
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (
  ticker_symbol VARCHAR(4),
  minute_start  TIMESTAMP,
  trades        INTEGER,
  volume        BIGINT,
  avg_price     DOUBLE,
  min_price     DOUBLE,
  max_price     DOUBLE,
  open_price    DOUBLE,
  close_price   DOUBLE);

CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM ticker_symbol,
         STEP(s.ROWTIME BY INTERVAL '60' SECOND),
         COUNT(*),
         SUM(volume),
         AVG(price),
         MIN(price),
         MAX(price),
         FIRST_VALUE(price),
         LAST_VALUE(price)
  FROM "SOURCE_SQL_STREAM_001" AS s
  GROUP BY ticker_symbol, STEP(s.ROWTIME BY INTERVAL '60' SECOND);
