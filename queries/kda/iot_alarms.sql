-- KDA application: threshold alarms over nested IoT sensor readings. The input schema
-- (queries/kda/iot.input-schema.json, as `aws kinesisanalytics describe-application` shows it)
-- maps $.device.id, $.reading.temperature, ... to columns; a reading that does not convert to its
-- column's type (a temperature of "hot", a humidity of 12.5, a time of "yesterday") goes to
-- error_stream, which a destination receives in KDA's columns.
-- Run: duckstream run queries/kda/iot_alarms.sql --source queries/kda/iot.jsonl \
--        --input-schema queries/kda/iot.input-schema.json --rowtime-from MEASURED_AT \
--        --sink DESTINATION_SQL_STREAM=- --sink error_stream=iot-errors.jsonl
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (
  device_id   VARCHAR(16),
  site        VARCHAR(16),
  measured_at TIMESTAMP,
  alarm       VARCHAR(16),
  temperature DOUBLE,
  humidity    INTEGER);

CREATE OR REPLACE PUMP "ALARM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM device_id, site, measured_at,
         CASE WHEN temperature > 80 AND humidity > 90 THEN 'HOT AND HUMID'
              WHEN temperature > 80 THEN 'HOT'
              ELSE 'HUMID' END,
         temperature, humidity
  FROM "SOURCE_SQL_STREAM_001"
  WHERE temperature > 80 OR humidity > 90;
