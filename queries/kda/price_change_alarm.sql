-- KDA application: an alarm for every trade that moves its ticker's price by more than 1%, with
-- the ticker's average price over the last minute (a sliding window) beside it. Two pumps in a
-- chain, as in KDA: the first computes the sliding average for every trade (the window must see
-- all of them), the second keeps the big moves.
-- Run: duckstream run queries/kda/price_change_alarm.sql --source 'demo:ticker?rows=20000'
-- Replay a recorded file: add --rowtime-from EVENT_TIME
CREATE OR REPLACE STREAM "TRADES_WITH_AVERAGE" (
  ticker_symbol VARCHAR(4),
  change        DOUBLE,
  price         DOUBLE,
  avg_price_1m  DOUBLE);

CREATE OR REPLACE PUMP "AVERAGE_PUMP" AS INSERT INTO "TRADES_WITH_AVERAGE"
  SELECT STREAM ticker_symbol, change, price,
         AVG(price) OVER W1
  FROM "SOURCE_SQL_STREAM_001"
  WINDOW W1 AS (PARTITION BY ticker_symbol RANGE INTERVAL '1' MINUTE PRECEDING);

CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (
  ticker_symbol VARCHAR(4),
  price         DOUBLE,
  change        DOUBLE,
  pct_change    DOUBLE,
  avg_price_1m  DOUBLE);

CREATE OR REPLACE PUMP "ALARM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM ticker_symbol, price, change,
         ROUND(change / (price - change) * 100, 2),
         avg_price_1m
  FROM "TRADES_WITH_AVERAGE"
  WHERE ABS(change / (price - change)) * 100 > 1;
