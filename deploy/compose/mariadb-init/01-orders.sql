-- Sample data for the compose setup: run once by the mariadb image on an
-- empty data volume, in database `shop` (MARIADB_DATABASE).
CREATE TABLE orders (
  id BIGINT PRIMARY KEY,
  customer_id BIGINT NOT NULL,
  amount DECIMAL(12, 2) NOT NULL,
  created_at DATETIME NOT NULL
);
INSERT INTO orders (id, customer_id, amount, created_at)
SELECT seq, seq % 97, (seq % 1000) + 0.99, '2024-06-01' + INTERVAL seq MINUTE
FROM seq_1_to_10000;
