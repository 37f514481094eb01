-- Day-to-date traded value per sector, reported every 10 minutes (cumulating windows).
-- Run: duckstream run queries/day_to_date_volume.sql --source 'demo:ticker?rows=100000'
CREATE STREAM trades (
  TICKER_SYMBOL VARCHAR, SECTOR VARCHAR, CHANGE DOUBLE, PRICE DOUBLE, VOLUME BIGINT,
  EVENT_TIME TIMESTAMP(3),
  WATERMARK FOR EVENT_TIME AS EVENT_TIME - INTERVAL '3' SECOND
);

SELECT
  window_start                      AS day,
  window_end                        AS as_of,
  SECTOR                            AS sector,
  SUM(VOLUME)                       AS volume_to_date,
  ROUND(SUM(PRICE * VOLUME), 2)     AS traded_value_to_date
FROM TABLE(CUMULATE(TABLE trades, DESCRIPTOR(EVENT_TIME), INTERVAL '10' MINUTE, INTERVAL '1' DAY))
GROUP BY window_start, window_end, SECTOR;
