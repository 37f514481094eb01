-- Per-minute KPIs for every ticker: trades, volume, price range and the minute's move.
-- Run: duckstream run queries/ticker_kpis.sql --source 'demo:ticker?rows=100000'
CREATE STREAM trades (
  TICKER_SYMBOL VARCHAR,
  SECTOR        VARCHAR,
  CHANGE        DOUBLE,
  PRICE         DOUBLE,
  VOLUME        BIGINT,
  EVENT_TIME    TIMESTAMP(3),
  WATERMARK FOR EVENT_TIME AS EVENT_TIME - INTERVAL '3' SECOND
);

SELECT
  window_start,
  TICKER_SYMBOL                                  AS ticker,
  COUNT(*)                                       AS trades,
  SUM(VOLUME)                                    AS volume,
  ROUND(FIRST_VALUE(PRICE), 2)                   AS open,
  ROUND(MAX(PRICE), 2)                           AS high,
  ROUND(MIN(PRICE), 2)                           AS low,
  ROUND(LAST_VALUE(PRICE), 2)                    AS close,
  ROUND(SUM(PRICE * VOLUME) / SUM(VOLUME), 2)    AS vwap,
  ROUND(100 * (LAST_VALUE(PRICE) - FIRST_VALUE(PRICE)) / FIRST_VALUE(PRICE), 3) AS change_pct
FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(EVENT_TIME), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, TICKER_SYMBOL;
