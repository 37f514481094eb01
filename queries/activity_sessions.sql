-- Bursts of big price moves per ticker: a session lasts while moves of more than 1% keep
-- coming less than 30 seconds apart.
-- Run: duckstream run queries/activity_sessions.sql --source 'demo:ticker?rows=100000'
CREATE STREAM trades (
  TICKER_SYMBOL VARCHAR, SECTOR VARCHAR, CHANGE DOUBLE, PRICE DOUBLE, VOLUME BIGINT,
  EVENT_TIME TIMESTAMP(3),
  WATERMARK FOR EVENT_TIME AS EVENT_TIME - INTERVAL '3' SECOND
);

SELECT
  TICKER_SYMBOL                                   AS ticker,
  window_start                                    AS burst_start,
  window_end                                      AS burst_end,
  COUNT(*)                                        AS big_moves,
  ROUND(MAX(ABS(CHANGE) / (PRICE - CHANGE)) * 100, 2) AS largest_move_pct
FROM TABLE(SESSION(TABLE trades PARTITION BY TICKER_SYMBOL, DESCRIPTOR(EVENT_TIME), INTERVAL '30' SECOND))
WHERE ABS(CHANGE) / (PRICE - CHANGE) > 0.01
GROUP BY window_start, window_end, TICKER_SYMBOL
HAVING COUNT(*) >= 2;
