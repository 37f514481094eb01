-- A 5-minute moving average of each ticker's price, updated every minute (hopping windows).
-- Run: duckstream run queries/moving_average.sql --source 'demo:ticker?rows=100000'
CREATE STREAM trades (
  TICKER_SYMBOL VARCHAR, SECTOR VARCHAR, CHANGE DOUBLE, PRICE DOUBLE, VOLUME BIGINT,
  EVENT_TIME TIMESTAMP(3),
  WATERMARK FOR EVENT_TIME AS EVENT_TIME - INTERVAL '3' SECOND
);

SELECT
  window_end                        AS as_of,
  TICKER_SYMBOL                     AS ticker,
  ROUND(AVG(PRICE), 2)              AS avg_price_5m,
  ROUND(STDDEV_SAMP(PRICE), 3)      AS stddev_5m,
  COUNT(*)                          AS trades
FROM TABLE(HOP(TABLE trades, DESCRIPTOR(EVENT_TIME), INTERVAL '1' MINUTE, INTERVAL '5' MINUTE))
GROUP BY window_start, window_end, TICKER_SYMBOL;
