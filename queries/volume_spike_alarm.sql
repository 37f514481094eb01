-- Alarm rows: a ticker whose volume in the last 10 seconds is more than 4 times its average
-- 10-second volume over the last 5 minutes. Two windowed queries feed a third.
-- Run: duckstream run queries/volume_spike_alarm.sql --source 'demo:ticker?rows=100000'
CREATE STREAM trades (
  TICKER_SYMBOL VARCHAR, SECTOR VARCHAR, CHANGE DOUBLE, PRICE DOUBLE, VOLUME BIGINT,
  EVENT_TIME TIMESTAMP(3),
  WATERMARK FOR EVENT_TIME AS EVENT_TIME - INTERVAL '3' SECOND
);

CREATE VIEW volume_10s AS
SELECT window_start AS bucket, TICKER_SYMBOL AS ticker, SUM(VOLUME) AS volume
FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(EVENT_TIME), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, TICKER_SYMBOL;

SELECT
  window_end                               AS at,
  ticker,
  'VOLUME SPIKE'                           AS alarm,
  MAX(volume) FILTER (WHERE bucket = window_end - INTERVAL '10' SECOND) AS volume_10s,
  ROUND(AVG(volume), 0)                    AS avg_volume_10s_5m
FROM TABLE(HOP(TABLE volume_10s, DESCRIPTOR(bucket), INTERVAL '10' SECOND, INTERVAL '5' MINUTE))
GROUP BY window_start, window_end, ticker
HAVING MAX(volume) FILTER (WHERE bucket = window_end - INTERVAL '10' SECOND) > 4 * AVG(volume);
