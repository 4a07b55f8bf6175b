-- bench/migrate-source.sql: the MariaDB source of bench/migrate.sh, a shop of 25 tables.
-- migrate.sh replaces each @n_<table> with that table's row count (SCALE=1: full size,
-- about 6.3M rows in all) before it runs this file.
-- Deterministic: every value is a function of the row number (MariaDB's built-in
-- SEQUENCE engine, seq_1_to_N), no RAND(), no NOW(); no zero dates.
-- Tables are created with their primary key only, filled in key order, and then get
-- their unique and secondary indexes and foreign keys in one ALTER each (sorted
-- index builds; foreign_key_checks is off while loading, every reference is valid).
SET SESSION time_zone = '+00:00';
SET SESSION foreign_key_checks = 0;
SET SESSION unique_checks = 0;
SET SESSION sql_log_bin = 0;
SET SESSION sql_mode = 'STRICT_TRANS_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO';

-- ---------------------------------------------------------------- lookups
CREATE TABLE countries (
  code        CHAR(2)      NOT NULL,
  name        VARCHAR(64)  NOT NULL,
  phone_code  SMALLINT     NULL,
  in_eu       TINYINT(1)   NOT NULL DEFAULT 0,
  PRIMARY KEY (code)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO countries
SELECT concat(char(65 + (seq - 1) DIV 26), char(65 + (seq - 1) % 26)),
       concat(elt(1 + seq % 8, 'Republic of ', 'Kingdom of ', '', 'Free State of ', 'Ísland ', 'Österreich ', '日本 ', 'Ελλάδα '), 'C', seq),
       IF(seq % 9 = 0, NULL, seq * 3), seq % 4 = 0
FROM seq_1_to_200;

CREATE TABLE currencies (
  code      CHAR(3)     NOT NULL,
  name      VARCHAR(40) NOT NULL,
  decimals  TINYINT     NOT NULL DEFAULT 2,
  symbol    VARCHAR(4)  NULL,
  PRIMARY KEY (code)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO currencies
SELECT concat('C', char(65 + (seq - 1) DIV 26), char(65 + (seq - 1) % 26)), concat('Currency ', seq),
       IF(seq % 7 = 0, 0, 2), elt(1 + seq % 5, '€', '$', '£', '¥', NULL)
FROM seq_1_to_30;

CREATE TABLE settings (
  name        VARCHAR(64) NOT NULL,
  value       TEXT        NULL,
  updated_at  TIMESTAMP   NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO settings
SELECT concat('setting.', seq), concat('{"v":', seq, '}'), TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq HOUR
FROM seq_1_to_50;

CREATE TABLE regions (
  id            INT          NOT NULL AUTO_INCREMENT,
  country_code  CHAR(2)      NOT NULL,
  name          VARCHAR(80)  NOT NULL,
  population    BIGINT       NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO regions
SELECT seq, concat(char(65 + ((seq - 1) % 200) DIV 26), char(65 + ((seq - 1) % 200) % 26)), concat('Region ', seq),
       IF(seq % 11 = 0, NULL, seq * 1013)
FROM seq_1_to_2000;

CREATE TABLE warehouses (
  id          INT          NOT NULL AUTO_INCREMENT,
  region_id   INT          NOT NULL,
  code        VARCHAR(16)  NOT NULL,
  capacity    INT          NOT NULL DEFAULT 10000,
  opened_on   DATE         NOT NULL,
  active      TINYINT(1)   NOT NULL DEFAULT 1,
  created_at  TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO warehouses
SELECT seq, 1 + (seq * 37) % 2000, concat('WH-', lpad(seq, 3, '0')), 5000 + seq * 250,
       DATE '2010-01-01' + INTERVAL seq * 61 DAY, seq % 10 <> 0, TIMESTAMP '2015-01-01 00:00:00' + INTERVAL seq DAY
FROM seq_1_to_40;

CREATE TABLE employees (
  id            INT            NOT NULL AUTO_INCREMENT,
  manager_id    INT            NULL,
  warehouse_id  INT            NULL,
  first_name    VARCHAR(50)    NOT NULL,
  last_name     VARCHAR(50)    NOT NULL,
  email         VARCHAR(120)   NOT NULL,
  hired_on      DATE           NOT NULL,
  salary        DECIMAL(10,2)  NOT NULL,
  is_active     TINYINT(1)     NOT NULL DEFAULT 1,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO employees
SELECT seq, IF(seq <= 20, NULL, 1 + seq % 20), IF(seq % 13 = 0, NULL, 1 + seq % 40),
       elt(1 + seq % 10, 'Anna', 'Björn', 'Chloé', 'Dmitri', 'Eun-ji', 'Fatima', 'Giulia', 'Hiro', 'Ivan', 'Zoë'),
       elt(1 + (seq DIV 10) % 10, 'Müller', 'Smith', 'Nowak', 'García', 'Rossi', 'Kim', 'Ivanova', 'Dubois', 'O''Brien', 'Tanaka'),
       concat('employee', seq, '@example.com'), DATE '2005-01-01' + INTERVAL (seq * 7) % 6500 DAY,
       30000 + (seq * 7919) % 90000 + (seq % 100) / 100, seq % 17 <> 0
FROM seq_1_to_2000;

CREATE TABLE categories (
  id         INT           NOT NULL AUTO_INCREMENT,
  parent_id  INT           NULL,
  name       VARCHAR(100)  NOT NULL,
  slug       VARCHAR(120)  NOT NULL,
  position   SMALLINT      NOT NULL DEFAULT 0,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO categories
SELECT seq, IF(seq <= 50, NULL, 1 + seq % 50), concat('Category ', seq), concat('category-', seq), seq % 30
FROM seq_1_to_500;

CREATE TABLE brands (
  id            INT          NOT NULL AUTO_INCREMENT,
  name          VARCHAR(80)  NOT NULL,
  country_code  CHAR(2)      NULL,
  founded_on    DATE         NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO brands
SELECT seq, concat('Brand ', seq), IF(seq % 6 = 0, NULL, concat(char(65 + ((seq * 7) % 200) DIV 26), char(65 + ((seq * 7) % 200) % 26))),
       IF(seq % 5 = 0, NULL, DATE '1900-01-01' + INTERVAL (seq * 97) % 40000 DAY)
FROM seq_1_to_1000;

CREATE TABLE suppliers (
  id            INT           NOT NULL AUTO_INCREMENT,
  name          VARCHAR(120)  NOT NULL,
  email         VARCHAR(120)  NOT NULL,
  country_code  CHAR(2)       NOT NULL,
  rating        DOUBLE        NULL,
  contact       JSON          NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO suppliers
SELECT seq, concat('Supplier ', seq, ' GmbH'), concat('sales', seq, '@supplier.example'),
       concat(char(65 + ((seq * 13) % 200) DIV 26), char(65 + ((seq * 13) % 200) % 26)),
       IF(seq % 9 = 0, NULL, (seq * 37 % 500) / 100),
       json_object('phone', concat('+49 30 ', seq), 'person', elt(1 + seq % 3, 'Jürgen', 'Amélie', '王芳'))
FROM seq_1_to_2000;

CREATE TABLE tags (
  id    SMALLINT     NOT NULL AUTO_INCREMENT,
  name  VARCHAR(40)  NOT NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO tags SELECT seq, concat('tag-', seq) FROM seq_1_to_1000;

CREATE TABLE coupons (
  code          VARCHAR(20)   NOT NULL,
  discount_pct  DECIMAL(5,2)  NOT NULL,
  valid_from    DATE          NOT NULL,
  valid_until   DATE          NULL,
  max_uses      INT           NULL,
  created_at    TIMESTAMP     NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (code)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO coupons
SELECT concat('SAVE', lpad(seq, 6, '0')), 5 + (seq % 40) + (seq % 4) * 0.25, DATE '2021-01-01' + INTERVAL seq % 900 DAY,
       IF(seq % 5 = 0, NULL, DATE '2021-06-01' + INTERVAL seq % 900 DAY), IF(seq % 3 = 0, NULL, 100 + seq % 900),
       TIMESTAMP '2020-12-01 00:00:00' + INTERVAL seq MINUTE
FROM seq_1_to_5000;

-- ---------------------------------------------------------------- catalog
CREATE TABLE products (
  id           INT            NOT NULL AUTO_INCREMENT,
  category_id  INT            NOT NULL,
  brand_id     INT            NULL,
  supplier_id  INT            NOT NULL,
  sku          VARCHAR(32)    NOT NULL,
  name         VARCHAR(200)   NOT NULL,
  description  TEXT           NULL,
  price        DECIMAL(12,2)  NOT NULL,
  weight_kg    DOUBLE         NULL,
  status       ENUM('draft','active','discontinued') NOT NULL DEFAULT 'active',
  attrs        JSON           NULL,
  created_at   TIMESTAMP      NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at   DATETIME       NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO products
SELECT seq, 1 + (seq * 31) % 500, IF(seq % 10 = 0, NULL, 1 + (seq * 17) % 1000), 1 + (seq * 7) % 2000,
       concat('SKU-', lpad(seq, 8, '0')),
       concat(elt(1 + seq % 6, 'Steel ', 'Wooden ', 'Smart ', 'Organic ', 'Vintage ', 'Compact '),
              elt(1 + (seq DIV 6) % 6, 'chair', 'lamp', 'kettle', 'backpack', 'speaker', 'über-mug ☕'), ' #', seq),
       IF(seq % 8 = 0, NULL, concat('A product described in a few words: ', repeat('durable, light, easy to clean; ', 1 + seq % 6), 'ref ', seq)),
       1 + (crc32(concat('p', seq)) % 100000) / 100, IF(seq % 12 = 0, NULL, (crc32(concat('w', seq)) % 20000) / 1000),
       elt(1 + (seq % 20 = 0) + (seq % 33 = 0), 'active', 'discontinued', 'draft'),
       IF(seq % 4 = 0, NULL, json_object('color', elt(1 + seq % 5, 'red', 'green', 'blue', 'black', 'white'), 'size', seq % 50, 'eco', seq % 3 = 0)),
       TIMESTAMP '2019-01-01 00:00:00' + INTERVAL (seq * 3607) % 100000000 SECOND,
       IF(seq % 3 = 0, NULL, TIMESTAMP '2022-01-01 00:00:00' + INTERVAL (seq * 5711) % 60000000 SECOND)
FROM seq_1_to_@n_products;

CREATE TABLE product_tags (
  product_id  INT       NOT NULL,
  tag_id      SMALLINT  NOT NULL,
  added_at    DATETIME  NOT NULL,
  PRIMARY KEY (product_id, tag_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO product_tags
SELECT 1 + (seq - 1) % @n_products, 1 + ((1 + (seq - 1) % @n_products) * 7 + ((seq - 1) DIV @n_products) * 331) % 1000,
       TIMESTAMP '2022-01-01 00:00:00' + INTERVAL seq * 13 MINUTE
FROM seq_1_to_@n_product_tags;

CREATE TABLE price_history (
  id          BIGINT         NOT NULL AUTO_INCREMENT,
  product_id  INT            NOT NULL,
  price       DECIMAL(12,2)  NOT NULL,
  valid_from  DATE           NOT NULL,
  valid_to    DATE           NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO price_history
SELECT seq, 1 + (seq - 1) % @n_products, 1 + (crc32(concat('ph', seq)) % 100000) / 100,
       DATE '2018-01-01' + INTERVAL ((seq - 1) DIV @n_products) * 90 DAY,
       IF(seq > @n_price_history - @n_products, NULL, DATE '2018-01-01' + INTERVAL ((seq - 1) DIV @n_products) * 90 + 89 DAY)
FROM seq_1_to_@n_price_history;

CREATE TABLE inventory (
  warehouse_id  INT        NOT NULL,
  product_id    INT        NOT NULL,
  qty           INT        NOT NULL DEFAULT 0,
  reserved      INT        NOT NULL DEFAULT 0,
  updated_at    TIMESTAMP  NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (warehouse_id, product_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO inventory
SELECT 1 + (seq - 1) DIV @n_products, 1 + (seq - 1) % @n_products, crc32(concat('q', seq)) % 5000, seq % 7,
       TIMESTAMP '2024-03-01 00:00:00' + INTERVAL seq SECOND
FROM seq_1_to_@n_inventory;

-- ---------------------------------------------------------------- customers
CREATE TABLE customers (
  id              BIGINT        NOT NULL AUTO_INCREMENT,
  email           VARCHAR(190)  NOT NULL,
  first_name      VARCHAR(60)   NOT NULL,
  last_name       VARCHAR(60)   NOT NULL,
  country_code    CHAR(2)       NOT NULL,
  phone           VARCHAR(32)   NULL,
  birth_date      DATE          NULL,
  is_vip          TINYINT(1)    NOT NULL DEFAULT 0,
  loyalty_points  INT           NOT NULL DEFAULT 0,
  created_at      TIMESTAMP     NOT NULL DEFAULT CURRENT_TIMESTAMP,
  prefs           JSON          NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO customers
SELECT seq, concat('customer', seq, '@mail', seq % 97, '.example'),
       elt(1 + seq % 12, 'Anna', 'Björn', 'Chloé', 'Dmitri', 'Eun-ji', 'Fatima', 'Giulia', 'Hiro', 'Ivan', 'Zoë', 'Łukasz', '美咲'),
       elt(1 + (seq DIV 12) % 12, 'Müller', 'Smith', 'Nowak', 'García', 'Rossi', 'Kim', 'Ivanova', 'Dubois', 'O''Brien', 'Tanaka', 'Øster', 'Ng'),
       concat(char(65 + ((seq * 11) % 200) DIV 26), char(65 + ((seq * 11) % 200) % 26)),
       IF(seq % 5 = 0, NULL, concat('+', 1 + seq % 99, ' ', 100000000 + (seq * 7919) % 899999999)),
       IF(seq % 7 = 0, NULL, DATE '1940-01-01' + INTERVAL (crc32(concat('b', seq)) % 24000) DAY),
       seq % 50 = 0, (seq * 13) % 10000,
       TIMESTAMP '2016-01-01 00:00:00' + INTERVAL (seq * 97) % 250000000 SECOND,
       IF(seq % 3 = 0, NULL, json_object('newsletter', seq % 2 = 0, 'lang', elt(1 + seq % 4, 'en', 'de', 'fr', 'ja')))
FROM seq_1_to_@n_customers;

CREATE TABLE addresses (
  id            BIGINT        NOT NULL AUTO_INCREMENT,
  customer_id   BIGINT        NOT NULL,
  kind          ENUM('billing','shipping') NOT NULL DEFAULT 'shipping',
  line1         VARCHAR(200)  NOT NULL,
  city          VARCHAR(100)  NOT NULL,
  postcode      VARCHAR(16)   NULL,
  country_code  CHAR(2)       NOT NULL,
  is_default    TINYINT(1)    NOT NULL DEFAULT 0,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO addresses
SELECT seq, 1 + (seq - 1) % @n_customers, IF(seq > @n_customers, 'billing', 'shipping'),
       concat(1 + seq % 300, ' ', elt(1 + seq % 6, 'Main Street', 'Hauptstraße', 'Rue de la Paix', 'Via Roma', 'Calle Mayor', '銀座通り')),
       elt(1 + seq % 8, 'Berlin', 'München', 'Paris', 'Kraków', 'São Paulo', 'Tōkyō', 'Αθήνα', 'Reykjavík'),
       IF(seq % 10 = 0, NULL, lpad((seq * 7) % 99999, 5, '0')),
       concat(char(65 + ((1 + (seq - 1) % @n_customers) * 11 % 200) DIV 26), char(65 + ((1 + (seq - 1) % @n_customers) * 11 % 200) % 26)),
       seq <= @n_customers
FROM seq_1_to_@n_addresses;

-- ---------------------------------------------------------------- orders
CREATE TABLE orders (
  id                   BIGINT         NOT NULL AUTO_INCREMENT,
  customer_id          BIGINT         NOT NULL,
  shipping_address_id  BIGINT         NULL,
  warehouse_id         INT            NOT NULL,
  currency             CHAR(3)        NOT NULL DEFAULT 'CAA',
  status               ENUM('new','paid','shipped','delivered','cancelled','returned') NOT NULL DEFAULT 'new',
  total                DECIMAL(14,2)  NOT NULL DEFAULT 0.00,
  placed_at            DATETIME       NOT NULL,
  shipped_on           DATE           NULL,
  note                 TEXT           NULL,
  is_gift              TINYINT(1)     NOT NULL DEFAULT 0,
  created_at           TIMESTAMP      NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at           TIMESTAMP      NULL DEFAULT NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO orders
SELECT seq, 1 + (crc32(concat('c', seq)) % @n_customers), IF(seq % 20 = 0, NULL, 1 + (crc32(concat('c', seq)) % @n_customers)),
       1 + seq % 40, concat('C', char(65 + (seq % 30) DIV 26), char(65 + (seq % 30) % 26)),
       elt(1 + (crc32(concat('s', seq)) % 10), 'delivered', 'delivered', 'delivered', 'shipped', 'shipped', 'paid', 'new', 'cancelled', 'returned', 'delivered'),
       (crc32(concat('t', seq)) % 5000000) / 100,
       TIMESTAMP '2019-01-01 00:00:00' + INTERVAL (seq * 149) SECOND,
       IF(seq % 4 = 0, NULL, DATE '2019-01-02' + INTERVAL (seq * 149) DIV 86400 + seq % 5 DAY),
       IF(seq % 9 <> 0, NULL, concat('Please ring twice. ', elt(1 + seq % 4, 'Leave at the door.', 'Zustellung an Nachbarn erlaubt.', '置き配OK', 'Fragile: «verre»'))),
       seq % 25 = 0,
       TIMESTAMP '2019-01-01 00:00:00' + INTERVAL (seq * 149) SECOND,
       IF(seq % 3 = 0, NULL, TIMESTAMP '2019-01-02 00:00:00' + INTERVAL (seq * 149) SECOND)
FROM seq_1_to_@n_orders;

CREATE TABLE order_lines (
  order_id    BIGINT         NOT NULL,
  line_no     SMALLINT       NOT NULL,
  product_id  INT            NOT NULL,
  qty         INT            NOT NULL DEFAULT 1,
  unit_price  DECIMAL(12,2)  NOT NULL,
  discount    DECIMAL(5,2)   NOT NULL DEFAULT 0.00,
  tax_rate    DOUBLE         NOT NULL,
  note        VARCHAR(100)   NULL,
  PRIMARY KEY (order_id, line_no)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
-- @n_order_lines = 2.5 x @n_orders: order o (0-based) has lines ceil(2.5 o) .. ceil(2.5 (o+1)) - 1.
INSERT INTO order_lines
SELECT 1 + ((seq - 1) * 2) DIV 5, seq - ((((seq - 1) * 2) DIV 5) * 5 + 1) DIV 2,
       1 + (crc32(concat('l', seq)) % @n_products), 1 + seq % 5, 1 + (crc32(concat('u', seq)) % 50000) / 100,
       IF(seq % 6 = 0, (seq % 30) + 0.5, 0), elt(1 + seq % 3, 0.19, 0.07, 0.2),
       IF(seq % 40 = 0, 'gift wrap', NULL)
FROM seq_1_to_@n_order_lines;

CREATE TABLE order_coupons (
  order_id     BIGINT       NOT NULL,
  coupon_code  VARCHAR(20)  NOT NULL,
  applied_at   DATETIME     NOT NULL,
  PRIMARY KEY (order_id, coupon_code)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO order_coupons
SELECT 1 + (seq - 1) * (@n_orders DIV @n_order_coupons), concat('SAVE', lpad(1 + seq % 5000, 6, '0')),
       TIMESTAMP '2019-01-01 00:00:00' + INTERVAL ((1 + (seq - 1) * (@n_orders DIV @n_order_coupons)) * 149) SECOND
FROM seq_1_to_@n_order_coupons;

CREATE TABLE payments (
  id         BIGINT         NOT NULL AUTO_INCREMENT,
  order_id   BIGINT         NOT NULL,
  method     ENUM('card','paypal','transfer','voucher') NOT NULL,
  amount     DECIMAL(14,2)  NOT NULL,
  currency   CHAR(3)        NOT NULL,
  paid_at    DATETIME(3)    NOT NULL,
  reference  CHAR(32)       NOT NULL,
  status     VARCHAR(16)    NOT NULL DEFAULT 'captured',
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO payments
SELECT seq, 1 + ((seq - 1) * 2) % @n_orders, elt(1 + seq % 4, 'card', 'paypal', 'transfer', 'voucher'),
       (crc32(concat('a', seq)) % 5000000) / 100, concat('C', char(65 + (seq % 30) DIV 26), char(65 + (seq % 30) % 26)),
       TIMESTAMP '2019-01-01 00:00:00' + INTERVAL (seq * 298) SECOND + INTERVAL seq % 1000 * 1000 MICROSECOND,
       md5(concat('pay', seq)), IF(seq % 50 = 0, 'refunded', 'captured')
FROM seq_1_to_@n_payments;

CREATE TABLE shipments (
  id            BIGINT       NOT NULL AUTO_INCREMENT,
  order_id      BIGINT       NOT NULL,
  warehouse_id  INT          NOT NULL,
  carrier       VARCHAR(32)  NOT NULL,
  tracking_no   VARCHAR(40)  NOT NULL,
  shipped_at    DATETIME     NOT NULL,
  delivered_at  DATETIME     NULL,
  weight_kg     DOUBLE       NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO shipments
SELECT seq, 1 + ((seq - 1) * 3) % @n_orders, 1 + seq % 40, elt(1 + seq % 4, 'DHL', 'UPS', 'La Poste', 'ヤマト運輸'),
       concat('TRK', lpad(seq, 12, '0')), TIMESTAMP '2019-01-02 00:00:00' + INTERVAL (seq * 447) SECOND,
       IF(seq % 5 = 0, NULL, TIMESTAMP '2019-01-04 00:00:00' + INTERVAL (seq * 447) SECOND), IF(seq % 10 = 0, NULL, (seq % 3000) / 100)
FROM seq_1_to_@n_shipments;

CREATE TABLE reviews (
  id             INT           NOT NULL AUTO_INCREMENT,
  product_id     INT           NOT NULL,
  customer_id    BIGINT        NOT NULL,
  rating         TINYINT       NOT NULL,
  title          VARCHAR(120)  NULL,
  body           TEXT          NULL,
  helpful_votes  INT           NOT NULL DEFAULT 0,
  created_at     DATETIME      NOT NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO reviews
SELECT seq, 1 + (seq - 1) % @n_products, 1 + (seq - 1) % @n_customers, 1 + crc32(concat('r', seq)) % 5,
       IF(seq % 6 = 0, NULL, elt(1 + seq % 5, 'Great!', 'Not bad', 'Sehr gut 👍', 'Déçu', 'Would buy again')),
       IF(seq % 4 = 0, NULL, concat('Review ', seq, ': ', repeat('it does what it says, ', 1 + seq % 8), elt(1 + seq % 3, '🙂', 'ok', '★★★★☆'))),
       seq % 37, TIMESTAMP '2020-01-01 00:00:00' + INTERVAL (seq * 911) SECOND
FROM seq_1_to_@n_reviews;

CREATE TABLE events (
  id           BIGINT        NOT NULL AUTO_INCREMENT,
  customer_id  BIGINT        NULL,
  session_id   CHAR(32)      NOT NULL,
  kind         VARCHAR(32)   NOT NULL,
  payload      JSON          NULL,
  -- No DEFAULT CURRENT_TIMESTAMP here: on a TIMESTAMP(3) column MariaDB makes it
  -- CURRENT_TIMESTAMP(3), and pgloader 3.6.7 quotes that as a string, PostgreSQL refuses
  -- its CREATE TABLE and pgloader creates no table at all (and exits 0).
  occurred_at  TIMESTAMP(3)  NOT NULL,
  ip           VARCHAR(45)   NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO events
SELECT seq, IF(seq % 4 = 0, NULL, 1 + (crc32(concat('e', seq)) % @n_customers)), md5(concat('sess', seq DIV 20)),
       elt(1 + seq % 7, 'page_view', 'page_view', 'search', 'add_to_cart', 'checkout', 'login', 'page_view'),
       IF(seq % 5 = 0, NULL, json_object('path', concat('/p/', seq % 50000), 'ms', seq % 2000, 'q', IF(seq % 7 = 2, concat('query ', seq % 100), NULL))),
       TIMESTAMP '2023-01-01 00:00:00' + INTERVAL (seq * 37) SECOND + INTERVAL (seq % 1000) * 1000 MICROSECOND,
       IF(seq % 10 = 0, NULL, IF(seq % 3 = 0, concat('2001:db8::', hex(seq % 65535)), concat('10.', seq % 256, '.', (seq DIV 256) % 256, '.', seq % 7)))
FROM seq_1_to_@n_events;

CREATE TABLE audit_log (
  id          BIGINT       NOT NULL AUTO_INCREMENT,
  entity      VARCHAR(32)  NOT NULL,
  entity_id   BIGINT       NOT NULL,
  action      ENUM('insert','update','delete') NOT NULL,
  actor_id    INT          NULL,
  changed_at  DATETIME(6)  NOT NULL,
  diff        JSON         NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO audit_log
SELECT seq, elt(1 + seq % 4, 'order', 'customer', 'product', 'payment'), 1 + (seq * 7) % 100000,
       elt(1 + (seq % 10 > 6) + (seq % 10 = 9), 'update', 'insert', 'delete'), IF(seq % 3 = 0, NULL, 1 + seq % 2000),
       TIMESTAMP '2022-01-01 00:00:00' + INTERVAL (seq * 211) SECOND + INTERVAL seq % 1000000 MICROSECOND,
       IF(seq % 6 = 0, NULL, json_object('field', elt(1 + seq % 3, 'status', 'price', 'email'), 'old', seq % 100, 'new', seq % 100 + 1))
FROM seq_1_to_@n_audit_log;

-- ---------------------------------------------------------------- keys
ALTER TABLE countries    ADD UNIQUE KEY uq_countries_name (name);
ALTER TABLE currencies   ADD UNIQUE KEY uq_currencies_name (name);
ALTER TABLE regions      ADD UNIQUE KEY uq_regions_country_name (country_code, name),
  ADD CONSTRAINT fk_regions_country FOREIGN KEY (country_code) REFERENCES countries (code) ON UPDATE CASCADE ON DELETE RESTRICT;
ALTER TABLE warehouses   ADD UNIQUE KEY uq_warehouses_code (code),
  ADD CONSTRAINT fk_warehouses_region FOREIGN KEY (region_id) REFERENCES regions (id) ON DELETE RESTRICT;
ALTER TABLE employees    ADD UNIQUE KEY uq_employees_email (email), ADD KEY ix_employees_name (last_name, first_name),
  ADD CONSTRAINT fk_employees_manager FOREIGN KEY (manager_id) REFERENCES employees (id) ON DELETE SET NULL,
  ADD CONSTRAINT fk_employees_warehouse FOREIGN KEY (warehouse_id) REFERENCES warehouses (id) ON DELETE SET NULL ON UPDATE CASCADE;
ALTER TABLE categories   ADD UNIQUE KEY uq_categories_slug (slug),
  ADD CONSTRAINT fk_categories_parent FOREIGN KEY (parent_id) REFERENCES categories (id) ON DELETE CASCADE;
ALTER TABLE brands       ADD UNIQUE KEY uq_brands_name (name),
  ADD CONSTRAINT fk_brands_country FOREIGN KEY (country_code) REFERENCES countries (code) ON DELETE SET NULL ON UPDATE CASCADE;
ALTER TABLE suppliers    ADD UNIQUE KEY uq_suppliers_email (email),
  ADD CONSTRAINT fk_suppliers_country FOREIGN KEY (country_code) REFERENCES countries (code) ON UPDATE CASCADE;
ALTER TABLE tags         ADD UNIQUE KEY uq_tags_name (name);
ALTER TABLE coupons      ADD KEY ix_coupons_valid (valid_from, valid_until);
ALTER TABLE products     ADD UNIQUE KEY uq_products_sku (sku), ADD KEY ix_products_status (status, price),
  ADD CONSTRAINT fk_products_category FOREIGN KEY (category_id) REFERENCES categories (id) ON DELETE RESTRICT,
  ADD CONSTRAINT fk_products_brand FOREIGN KEY (brand_id) REFERENCES brands (id) ON DELETE SET NULL,
  ADD CONSTRAINT fk_products_supplier FOREIGN KEY (supplier_id) REFERENCES suppliers (id);
ALTER TABLE product_tags ADD KEY ix_product_tags_tag (tag_id),
  ADD CONSTRAINT fk_product_tags_product FOREIGN KEY (product_id) REFERENCES products (id) ON DELETE CASCADE,
  ADD CONSTRAINT fk_product_tags_tag FOREIGN KEY (tag_id) REFERENCES tags (id) ON DELETE CASCADE;
ALTER TABLE price_history ADD UNIQUE KEY uq_price_history (product_id, valid_from),
  ADD CONSTRAINT fk_price_history_product FOREIGN KEY (product_id) REFERENCES products (id) ON DELETE CASCADE;
ALTER TABLE inventory    ADD KEY ix_inventory_product (product_id),
  ADD CONSTRAINT fk_inventory_warehouse FOREIGN KEY (warehouse_id) REFERENCES warehouses (id) ON DELETE CASCADE,
  ADD CONSTRAINT fk_inventory_product FOREIGN KEY (product_id) REFERENCES products (id) ON DELETE CASCADE;
ALTER TABLE customers    ADD UNIQUE KEY uq_customers_email (email), ADD KEY ix_customers_name (last_name, first_name),
  ADD KEY ix_customers_created (created_at),
  ADD CONSTRAINT fk_customers_country FOREIGN KEY (country_code) REFERENCES countries (code) ON UPDATE CASCADE;
ALTER TABLE addresses    ADD KEY ix_addresses_customer (customer_id), ADD KEY ix_addresses_postcode (postcode),
  ADD CONSTRAINT fk_addresses_customer FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE CASCADE,
  ADD CONSTRAINT fk_addresses_country FOREIGN KEY (country_code) REFERENCES countries (code) ON UPDATE CASCADE;
ALTER TABLE orders       ADD KEY ix_orders_customer_placed (customer_id, placed_at), ADD KEY ix_orders_status (status, placed_at),
  ADD CONSTRAINT fk_orders_customer FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE RESTRICT ON UPDATE CASCADE,
  ADD CONSTRAINT fk_orders_address FOREIGN KEY (shipping_address_id) REFERENCES addresses (id) ON DELETE SET NULL,
  ADD CONSTRAINT fk_orders_warehouse FOREIGN KEY (warehouse_id) REFERENCES warehouses (id),
  ADD CONSTRAINT fk_orders_currency FOREIGN KEY (currency) REFERENCES currencies (code) ON UPDATE CASCADE;
ALTER TABLE order_lines  ADD KEY ix_order_lines_product (product_id),
  ADD CONSTRAINT fk_order_lines_order FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE,
  ADD CONSTRAINT fk_order_lines_product FOREIGN KEY (product_id) REFERENCES products (id) ON DELETE RESTRICT;
ALTER TABLE order_coupons ADD KEY ix_order_coupons_code (coupon_code),
  ADD CONSTRAINT fk_order_coupons_order FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE,
  ADD CONSTRAINT fk_order_coupons_coupon FOREIGN KEY (coupon_code) REFERENCES coupons (code) ON UPDATE CASCADE;
ALTER TABLE payments     ADD UNIQUE KEY uq_payments_reference (reference), ADD KEY ix_payments_order (order_id),
  ADD KEY ix_payments_paid (paid_at),
  ADD CONSTRAINT fk_payments_order FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE,
  ADD CONSTRAINT fk_payments_currency FOREIGN KEY (currency) REFERENCES currencies (code);
ALTER TABLE shipments    ADD UNIQUE KEY uq_shipments_tracking (tracking_no), ADD KEY ix_shipments_order (order_id),
  ADD CONSTRAINT fk_shipments_order FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE,
  ADD CONSTRAINT fk_shipments_warehouse FOREIGN KEY (warehouse_id) REFERENCES warehouses (id);
ALTER TABLE reviews      ADD UNIQUE KEY uq_reviews_product_customer (product_id, customer_id), ADD KEY ix_reviews_customer (customer_id),
  ADD CONSTRAINT fk_reviews_product FOREIGN KEY (product_id) REFERENCES products (id) ON DELETE CASCADE,
  ADD CONSTRAINT fk_reviews_customer FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE CASCADE;
ALTER TABLE events       ADD KEY ix_events_kind_time (kind, occurred_at), ADD KEY ix_events_customer (customer_id),
  ADD CONSTRAINT fk_events_customer FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE SET NULL;
ALTER TABLE audit_log    ADD KEY ix_audit_entity (entity, entity_id), ADD KEY ix_audit_actor (actor_id),
  ADD CONSTRAINT fk_audit_actor FOREIGN KEY (actor_id) REFERENCES employees (id) ON DELETE SET NULL;
