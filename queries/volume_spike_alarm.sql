-- Alarm rows: a trade whose volume is more than 3 times the average trade size of its ticker
-- in the same 30-second window (the view keeps the per-window figures; the alarm reads them).
-- Run: duckstream run queries/volume_spike_alarm.sql --source 'demo:ticker?rows=100000'
CREATE STREAM trades (
  TICKER_SYMBOL VARCHAR, SECTOR VARCHAR, CHANGE DOUBLE, PRICE DOUBLE, VOLUME BIGINT,
  EVENT_TIME TIMESTAMP(3),
  WATERMARK FOR EVENT_TIME AS EVENT_TIME - INTERVAL '3' SECOND
);

CREATE VIEW volume_30s AS
SELECT window_end AS at, TICKER_SYMBOL AS ticker, COUNT(*) AS trades,
       MAX(VOLUME) AS biggest_trade, AVG(VOLUME) AS avg_trade
FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(EVENT_TIME), INTERVAL '30' SECOND))
GROUP BY window_start, window_end, TICKER_SYMBOL;

SELECT at, ticker, 'VOLUME SPIKE' AS alarm, biggest_trade,
       ROUND(avg_trade, 0) AS avg_trade, ROUND(biggest_trade / avg_trade, 1) AS times_avg
FROM volume_30s
WHERE biggest_trade > 3 * avg_trade AND trades >= 10;
