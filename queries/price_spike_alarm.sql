-- Alarm rows: a single trade that moves its ticker's price by more than 5%.
-- Stateless: each alarm is emitted as soon as its trade arrives.
-- Run: duckstream run queries/price_spike_alarm.sql --source 'demo:ticker?rows=100000'
CREATE STREAM trades (
  TICKER_SYMBOL VARCHAR, SECTOR VARCHAR, CHANGE DOUBLE, PRICE DOUBLE, VOLUME BIGINT,
  EVENT_TIME TIMESTAMP(3),
  WATERMARK FOR EVENT_TIME AS EVENT_TIME - INTERVAL '3' SECOND
);

SELECT
  EVENT_TIME                                           AS at,
  TICKER_SYMBOL                                        AS ticker,
  CASE WHEN CHANGE > 0 THEN 'SPIKE UP' ELSE 'SPIKE DOWN' END AS alarm,
  ROUND(PRICE - CHANGE, 2)                             AS price_before,
  ROUND(PRICE, 2)                                      AS price,
  ROUND(100 * CHANGE / (PRICE - CHANGE), 2)            AS move_pct
FROM trades
WHERE ABS(CHANGE) / (PRICE - CHANGE) > 0.05;
