-- A continuously updated table of trades and average price per sector (no window):
-- every micro-batch that changes a sector's figures emits an updated row (op = update).
-- Run: duckstream run queries/sector_changes.sql --source 'demo:ticker?rows=5000'
CREATE STREAM trades (
  TICKER_SYMBOL VARCHAR, SECTOR VARCHAR, CHANGE DOUBLE, PRICE DOUBLE, VOLUME BIGINT,
  EVENT_TIME TIMESTAMP(3),
  WATERMARK FOR EVENT_TIME AS EVENT_TIME - INTERVAL '3' SECOND
);

SELECT SECTOR AS sector, COUNT(*) AS trades, ROUND(AVG(PRICE), 2) AS avg_price
FROM trades
GROUP BY SECTOR
EMIT CHANGES;
