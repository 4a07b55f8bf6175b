//! Whole-database jobs with their schema: a 16-table MariaDB shop (composite keys, foreign
//! keys with actions, unique and secondary indexes, defaults, auto-increment with gaps,
//! ENUM, SET, YEAR, BLOB, geometry, DATETIME and TIMESTAMP, NULL and '', a zero date, a
//! view) moved with one job, then the rows and the target's catalog checked.

use ferry_tests::db::{pg_url, MyDb, PgSchema};

/// The sample shop: 16 tables and a view.
const SHOP: &str = r#"
SET SESSION sql_mode = '';
CREATE TABLE customers (id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY, email VARCHAR(120) NOT NULL,
  name VARCHAR(80) NOT NULL DEFAULT '', tier ENUM('free','pro','team') NOT NULL DEFAULT 'free',
  flags SET('vip','beta','churn') DEFAULT NULL, created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at DATETIME NULL DEFAULT NULL ON UPDATE CURRENT_TIMESTAMP, birth_year YEAR NULL,
  UNIQUE KEY uq_email (email), KEY idx_tier_created (tier, created_at)) COMMENT='who buys';
CREATE TABLE addresses (customer_id INT UNSIGNED NOT NULL, seq SMALLINT NOT NULL, line1 VARCHAR(200) NOT NULL,
  city VARCHAR(80) NULL COMMENT 'NULL when unknown', PRIMARY KEY (customer_id, seq),
  CONSTRAINT fk_addr_customer FOREIGN KEY (customer_id) REFERENCES customers(id) ON DELETE CASCADE ON UPDATE CASCADE);
CREATE TABLE categories (id INT AUTO_INCREMENT PRIMARY KEY, parent_id INT NULL, name VARCHAR(60) NOT NULL,
  CONSTRAINT fk_cat_parent FOREIGN KEY (parent_id) REFERENCES categories(id) ON DELETE SET NULL);
CREATE TABLE products (id BIGINT AUTO_INCREMENT PRIMARY KEY, sku CHAR(12) NOT NULL, category_id INT NULL,
  price DECIMAL(12,2) NOT NULL DEFAULT 0.00, weight DOUBLE NULL, active TINYINT(1) NOT NULL DEFAULT 1,
  description TEXT, UNIQUE KEY uq_sku (sku), KEY idx_cat (category_id),
  CONSTRAINT fk_prod_cat FOREIGN KEY (category_id) REFERENCES categories(id) ON DELETE RESTRICT);
CREATE TABLE product_images (product_id BIGINT NOT NULL, pos TINYINT UNSIGNED NOT NULL, image BLOB,
  PRIMARY KEY (product_id, pos),
  CONSTRAINT fk_img_prod FOREIGN KEY (product_id) REFERENCES products(id) ON DELETE CASCADE);
CREATE TABLE warehouses (code CHAR(4) PRIMARY KEY, location POINT NULL, opened DATE NULL);
CREATE TABLE stock (warehouse CHAR(4) NOT NULL, product_id BIGINT NOT NULL, qty INT NOT NULL DEFAULT 0,
  PRIMARY KEY (warehouse, product_id), CONSTRAINT fk_stock_wh FOREIGN KEY (warehouse) REFERENCES warehouses(code),
  CONSTRAINT fk_stock_prod FOREIGN KEY (product_id) REFERENCES products(id) ON DELETE CASCADE);
CREATE TABLE orders (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, customer_id INT UNSIGNED NOT NULL,
  status ENUM('new','paid','shipped','cancelled') NOT NULL DEFAULT 'new',
  placed_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), shipped_on DATE NULL, note VARCHAR(255) NULL,
  KEY idx_cust_placed (customer_id, placed_at DESC),
  CONSTRAINT fk_order_customer FOREIGN KEY (customer_id) REFERENCES customers(id) ON DELETE RESTRICT ON UPDATE CASCADE);
CREATE TABLE order_items (order_id BIGINT UNSIGNED NOT NULL, line SMALLINT UNSIGNED NOT NULL, product_id BIGINT NOT NULL,
  qty INT NOT NULL, unit_price DECIMAL(12,2) NOT NULL, PRIMARY KEY (order_id, line), KEY idx_item_product (product_id),
  CONSTRAINT fk_item_order FOREIGN KEY (order_id) REFERENCES orders(id) ON DELETE CASCADE,
  CONSTRAINT fk_item_product FOREIGN KEY (product_id) REFERENCES products(id));
CREATE TABLE payments (id INT AUTO_INCREMENT PRIMARY KEY, order_id BIGINT UNSIGNED NOT NULL, amount DECIMAL(12,2) NOT NULL,
  paid_at TIMESTAMP(6) NULL DEFAULT NULL, method VARCHAR(20) NOT NULL DEFAULT 'card',
  CONSTRAINT fk_pay_order FOREIGN KEY (order_id) REFERENCES orders(id) ON DELETE CASCADE);
CREATE TABLE coupons (code VARCHAR(20) PRIMARY KEY, pct TINYINT UNSIGNED NOT NULL, valid_until DATE NULL);
CREATE TABLE order_coupons (order_id BIGINT UNSIGNED NOT NULL, code VARCHAR(20) NOT NULL, PRIMARY KEY (order_id, code),
  CONSTRAINT fk_oc_order FOREIGN KEY (order_id) REFERENCES orders(id) ON DELETE CASCADE,
  CONSTRAINT fk_oc_coupon FOREIGN KEY (code) REFERENCES coupons(code) ON UPDATE CASCADE);
CREATE TABLE reviews (id INT AUTO_INCREMENT PRIMARY KEY, product_id BIGINT NOT NULL, customer_id INT UNSIGNED NULL,
  stars TINYINT NOT NULL, body TEXT NULL, created DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE KEY uq_review (product_id, customer_id),
  CONSTRAINT fk_rev_prod FOREIGN KEY (product_id) REFERENCES products(id) ON DELETE CASCADE,
  CONSTRAINT fk_rev_cust FOREIGN KEY (customer_id) REFERENCES customers(id) ON DELETE SET NULL);
CREATE TABLE legacy_events (id INT AUTO_INCREMENT PRIMARY KEY, happened DATETIME NULL, label VARCHAR(30) NULL);
CREATE TABLE settings (k VARCHAR(40) PRIMARY KEY, v JSON NULL, bits BIT(8) NULL);
CREATE TABLE audit_log (id BIGINT AUTO_INCREMENT PRIMARY KEY, at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  who VARCHAR(40) NOT NULL DEFAULT 'system', what TEXT NOT NULL);
CREATE VIEW order_totals AS SELECT order_id, SUM(qty * unit_price) AS total FROM order_items GROUP BY order_id;

INSERT INTO customers (id, email, name, tier, flags, created_at, updated_at, birth_year) VALUES
  (1, 'a@x', 'Ann', 'pro', 'vip,beta', '2024-01-02 03:04:05', NULL, 1990),
  (2, 'b@x', '', 'free', '', '2024-02-03 04:05:06', '2024-03-01 00:00:00', NULL),
  (5, 'c@x', 'Cé', 'team', NULL, '2024-03-04 05:06:07', NULL, 2001),
  (9, 'd@x', 'Dee', 'free', 'churn', '2024-04-05 06:07:08', NULL, NULL);
ALTER TABLE customers AUTO_INCREMENT = 50;
INSERT INTO addresses VALUES (1, 1, 'Main St 1', 'Berlin'), (1, 2, 'Side St 2', NULL), (5, 1, 'Ring 3', '');
INSERT INTO categories VALUES (1, NULL, 'root'), (2, 1, 'tools'), (3, 2, 'saws');
INSERT INTO products VALUES (1, 'SKU-0001', 3, 19.99, 1.5, 1, 'a saw'), (2, 'SKU-0002', 2, 5.00, NULL, 0, NULL),
  (7, 'SKU-0007', NULL, 0.00, 0.125, 1, '');
INSERT INTO product_images VALUES (1, 0, 0x89504E470D0A1A0A00FF), (1, 1, ''), (2, 0, NULL);
INSERT INTO warehouses VALUES ('BER1', ST_GeomFromText('POINT(13.4 52.5)'), '2020-05-01'), ('MUC1', NULL, NULL);
INSERT INTO stock VALUES ('BER1', 1, 10), ('BER1', 2, 0), ('MUC1', 7, 3);
INSERT INTO orders VALUES (1, 1, 'paid', '2024-05-01 10:00:00.123', NULL, NULL), (2, 1, 'shipped', '2024-05-02 11:00:00.000', '2024-05-04', ''),
  (4, 5, 'new', '2024-05-03 12:30:00.500', NULL, 'gift');
INSERT INTO order_items VALUES (1, 1, 1, 2, 19.99), (1, 2, 2, 1, 5.00), (2, 1, 7, 10, 0.00), (4, 1, 1, 1, 18.50);
INSERT INTO payments VALUES (1, 1, 44.98, '2024-05-01 10:05:00.654321', 'card'), (3, 2, 0.00, NULL, 'voucher');
INSERT INTO coupons VALUES ('SPRING', 10, '2024-06-30'), ('OLD', 5, '0000-00-00');
INSERT INTO order_coupons VALUES (1, 'SPRING'), (2, 'OLD');
INSERT INTO reviews VALUES (1, 1, 1, 5, 'great', '2024-05-10 00:00:00'), (2, 1, NULL, 1, NULL, '2024-05-11 00:00:00');
INSERT INTO legacy_events VALUES (1, '0000-00-00 00:00:00', 'zero'), (2, '2019-12-31 23:59:59', 'real'), (3, NULL, NULL);
INSERT INTO settings VALUES ('theme', '{"dark": true}', b'10100101'), ('empty', NULL, NULL);
INSERT INTO audit_log (id, at, who, what) VALUES (1, '2024-01-01 00:00:00', 'system', 'created'), (2, '2024-01-02 00:00:00', 'ann', 'x');
"#;

const TABLES: [&str; 16] = [
    "addresses",
    "audit_log",
    "categories",
    "coupons",
    "customers",
    "legacy_events",
    "order_coupons",
    "order_items",
    "orders",
    "payments",
    "product_images",
    "products",
    "reviews",
    "settings",
    "stock",
    "warehouses",
];

fn one(text: String) -> String {
    text.trim().to_string()
}

#[test]
fn a_mariadb_shop_moves_to_postgres_with_its_schema() {
    let Some(src) = MyDb::new("ferry_mig_src") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_mig_dst") else {
        return;
    };
    src.sql(SHOP);
    let tmp = tempfile::tempdir().unwrap();
    let job = format!(
        "reader:\n  name: mysqlreader\n  parameter:\n    url: {src}\n    tables: [\"*\"]\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {pg}\n    schema: {d}\n    createTable: true\n\
         setting:\n  speed: {{channel: 3}}\n",
        src = src.url(),
        pg = pg_url(),
        d = dst.name
    );
    let (ok, out, err) = ferry_tests::proc::ferry_run_job(tmp.path(), &job, &["--quiet"]);
    assert!(ok, "{out}\n{err}");
    // One line per table, and the view listed as not migrated.
    for t in TABLES {
        assert!(
            out.lines().any(|l| l.starts_with(t) && l.ends_with("ok")),
            "{t}: {out}"
        );
    }
    assert!(
        out.contains("not migrated          : view order_totals"),
        "{out}"
    );
    assert!(out.contains("Tables                : 16"), "{out}");
    // Values changed on purpose are counted per table and column.
    assert!(out.contains("Changed values        : 2"), "{out}");
    assert!(
        out.contains("  legacy_events.happened: 1 zero date read as NULL")
            && out.contains("  coupons.valid_until: 1 zero date read as NULL"),
        "{out}"
    );

    check_shop_in_postgres(&src, &dst);
}

/// The shop's rows (counts, and values per table) and its catalog in PostgreSQL: primary
/// keys, indexes, foreign keys with their actions, defaults, NOT NULL, identities and
/// their next values, triggers, comments; then that the keys work.
fn check_shop_in_postgres(src: &MyDb, dst: &PgSchema) {
    // Rows: the same count in every table, and the same values: a checksum per table over
    // every column, each rendered the same way on both sides, rows in key order.
    for t in TABLES {
        assert_eq!(
            one(dst.sql(&format!("SELECT count(*) FROM {t}"))),
            one(src.sql(&format!("SELECT count(*) FROM {t}"))),
            "{t}"
        );
        let (pg, my) = checksum_sql(dst, t);
        let sum = one(dst.sql(&pg));
        assert_eq!(sum.len(), 32, "an md5: {sum}");
        assert_eq!(sum, one(src.sql(&my)), "checksum of {t}");
    }
    let pairs = [
        (
            "SELECT string_agg(concat_ws('|', id, email, name, tier, coalesce(flags, 'NULL'), to_char(created_at, 'YYYY-MM-DD HH24:MI:SS'), coalesce(birth_year::text, 'NULL')), ';' ORDER BY id) FROM customers",
            "SET time_zone = '+00:00'; SELECT group_concat(concat_ws('|', id, email, name, tier, coalesce(flags, 'NULL'), created_at, coalesce(birth_year, 'NULL')) ORDER BY id SEPARATOR ';') FROM customers",
        ),
        (
            "SELECT string_agg(concat_ws('|', customer_id, seq, coalesce(city, 'NULL')), ';' ORDER BY customer_id, seq) FROM addresses",
            "SELECT group_concat(concat_ws('|', customer_id, seq, coalesce(city, 'NULL')) ORDER BY customer_id, seq SEPARATOR ';') FROM addresses",
        ),
        (
            "SELECT string_agg(coalesce(md5(image), 'NULL'), ';' ORDER BY product_id, pos) FROM product_images",
            "SELECT group_concat(coalesce(md5(image), 'NULL') ORDER BY product_id, pos SEPARATOR ';') FROM product_images",
        ),
        (
            "SELECT sum(qty * unit_price)::text FROM order_items",
            "SELECT sum(qty * unit_price) FROM order_items",
        ),
        (
            "SELECT string_agg(to_char(placed_at, 'YYYY-MM-DD HH24:MI:SS.MS'), ';' ORDER BY id) FROM orders",
            "SELECT group_concat(date_format(placed_at, '%Y-%m-%d %H:%i:%s.%f') ORDER BY id SEPARATOR ';') FROM orders",
        ),
    ];
    for (pg, my) in pairs {
        let (a, mut b) = (one(dst.sql(pg)), one(src.sql(my)));
        if my.contains("date_format") {
            // MariaDB's %f has six digits; the source column keeps three.
            b = b
                .split(';')
                .map(|v| &v[..v.len() - 3])
                .collect::<Vec<_>>()
                .join(";");
        }
        assert_eq!(a, b, "{pg}");
    }
    // The zero date reads as NULL (counted in the summary), the real one stays.
    assert_eq!(
        one(dst.sql("SELECT coalesce(happened::text, 'NULL') FROM legacy_events ORDER BY id")),
        "NULL\n2019-12-31 23:59:59\nNULL"
    );
    assert_eq!(
        one(dst.sql("SELECT length(location) FROM warehouses WHERE code = 'BER1'")),
        "25",
        "geometry: 4-byte SRID + 21-byte WKB point"
    );

    // The catalog: primary keys (composite too).
    let pk = |t: &str| {
        one(dst.sql(&format!(
            "SELECT string_agg(a.attname, ',' ORDER BY k.n) FROM pg_index i \
             CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = '{}.{t}'::regclass AND i.indisprimary",
            dst.name
        )))
    };
    assert_eq!(pk("customers"), "id");
    assert_eq!(pk("addresses"), "customer_id,seq");
    assert_eq!(pk("stock"), "warehouse,product_id");
    assert_eq!(pk("order_coupons"), "order_id,code");
    // Unique and secondary indexes, with their columns and order.
    let index = |name: &str| {
        one(dst.sql(&format!(
            "SELECT pg_get_indexdef('{}.{name}'::regclass)",
            dst.name
        )))
    };
    assert!(index("customers_uq_email").contains("UNIQUE INDEX"));
    assert!(index("customers_idx_tier_created").ends_with("(tier, created_at)"));
    assert!(index("orders_idx_cust_placed").ends_with("(customer_id, placed_at DESC)"));
    assert!(index("reviews_uq_review").contains("UNIQUE INDEX"));
    assert!(index("products_uq_sku").contains("UNIQUE INDEX"));
    assert!(!index("order_items_idx_item_product").contains("UNIQUE"));
    // Foreign keys with their actions.
    let fk = |name: &str| {
        one(dst.sql(&format!(
            "SELECT confdeltype::text || confupdtype::text || ' ' || (SELECT relname FROM pg_class WHERE oid = confrelid) \
             FROM pg_constraint WHERE conname = '{name}' AND connamespace = '{}'::regnamespace",
            dst.name
        )))
    };
    let d = &dst.name;
    assert_eq!(fk("addresses_fk_addr_customer"), "cc customers");
    // MariaDB says RESTRICT for an action not given.
    assert_eq!(fk("categories_fk_cat_parent"), "nr categories");
    assert_eq!(fk("products_fk_prod_cat"), "rr categories");
    assert_eq!(fk("orders_fk_order_customer"), "rc customers");
    assert_eq!(fk("order_coupons_fk_oc_coupon"), "rc coupons");
    assert_eq!(fk("reviews_fk_rev_cust"), "nr customers");
    assert_eq!(
        one(dst.sql(&format!(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND connamespace = '{d}'::regnamespace"
        ))),
        "14"
    );
    // Defaults, NOT NULL, identity.
    let column = |t: &str, c: &str| {
        one(dst.sql(&format!(
            "SELECT a.attnotnull::text || ' ' || a.attidentity::text || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '-') \
             FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attrelid = '{d}.{t}'::regclass AND a.attname = '{c}'"
        )))
    };
    assert_eq!(column("customers", "id"), "true d -");
    assert_eq!(column("customers", "name"), "true  ''::character varying");
    let tier = column("customers", "tier");
    assert!(
        tier.starts_with("true  'free'::") && tier.ends_with("customers_tier"),
        "an enum type: {tier}"
    );
    assert_eq!(column("customers", "created_at"), "true  CURRENT_TIMESTAMP");
    assert_eq!(column("orders", "placed_at"), "true  LOCALTIMESTAMP");
    assert_eq!(column("products", "price"), "true  0.00");
    assert_eq!(
        column("audit_log", "who"),
        "true  'system'::character varying"
    );
    assert_eq!(column("payments", "paid_at"), "false  -");
    assert!(column("addresses", "city").starts_with("false"));
    // The next identity value is past the data and the source's counter (50, after gaps).
    assert_eq!(
        one(dst.sql("INSERT INTO customers (email) VALUES ('new@x') RETURNING id")),
        "50"
    );
    assert_eq!(
        one(dst.sql("INSERT INTO orders (customer_id) VALUES (1) RETURNING id")),
        "5"
    );
    // ON UPDATE CURRENT_TIMESTAMP is a trigger; comments are kept.
    dst.sql("UPDATE customers SET name = 'Bea' WHERE id = 2");
    assert_eq!(
        one(dst.sql("SELECT updated_at > '2024-03-01' FROM customers WHERE id = 2")),
        "t"
    );
    assert_eq!(
        one(dst.sql(&format!(
            "SELECT obj_description('{d}.customers'::regclass, 'pg_class')"
        ))),
        "who buys"
    );
    assert_eq!(
        one(dst.sql(&format!(
            "SELECT col_description('{d}.addresses'::regclass, 4)"
        ))),
        "NULL when unknown"
    );
    // The foreign keys work: a cascade deletes the addresses of a customer.
    dst.sql(
        "INSERT INTO addresses VALUES (9, 1, 'Gone St', NULL); DELETE FROM customers WHERE id = 9",
    );
    assert_eq!(
        one(dst.sql("SELECT count(*) FROM addresses WHERE customer_id = 9")),
        "0"
    );
    let refused = std::process::Command::new("psql")
        .args(["-X", "-q", "-d", &pg_url(), "-c"])
        .arg(format!("INSERT INTO {d}.stock VALUES ('NOPE', 1, 1)"))
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "a stock row for a warehouse that does not exist is refused"
    );
}

/// The SQL of a checksum of table `t` in PostgreSQL (`dst`, as migrated) and in MariaDB:
/// md5 over every row in primary-key order, each column rendered alike (bytes by their md5,
/// times to the microsecond in UTC, zero dates as NULL, the rest as text).
fn checksum_sql(dst: &PgSchema, t: &str) -> (String, String) {
    let cols = dst.sql(&format!(
        "SELECT column_name || ' ' || data_type FROM information_schema.columns \
         WHERE table_schema = '{}' AND table_name = '{t}' ORDER BY ordinal_position",
        dst.name
    ));
    let key = dst.sql(&format!(
        "SELECT string_agg(a.attname, ', ' ORDER BY k.n) FROM pg_index i \
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n) \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
         WHERE i.indrelid = '{}.{t}'::regclass AND i.indisprimary",
        dst.name
    ));
    let (mut pg, mut my) = (Vec::new(), Vec::new());
    for line in cols.lines() {
        let (c, ty) = line.split_once(' ').unwrap_or((line, ""));
        let (p, m) = match ty {
            "bytea" => (format!("md5({c})"), format!("md5({c})")),
            // A zero date arrives as NULL (and is counted as changed).
            "timestamp with time zone" | "timestamp without time zone" => (
                format!("to_char({c}, 'YYYY-MM-DD HH24:MI:SS.US')"),
                format!("date_format(nullif({c}, 0), '%Y-%m-%d %H:%i:%s.%f')"),
            ),
            "date" => (format!("{c}::text"), format!("nullif({c}, 0)")),
            // BIT(n) and unsigned BIGINT arrive as numbers.
            "numeric" => (format!("{c}::text"), format!("({c} + 0)")),
            _ => (format!("{c}::text"), c.to_string()),
        };
        pg.push(format!("coalesce({p}, 'NULL')"));
        my.push(format!("coalesce({m}, 'NULL')"));
    }
    let key = key.trim();
    (
        format!(
            "SET TIME ZONE 'UTC'; SELECT md5(coalesce(string_agg(concat_ws('|', {}), ';' ORDER BY {key}), '')) FROM {t}",
            pg.join(", ")
        ),
        format!(
            "SET time_zone = '+00:00', group_concat_max_len = 16777216; \
             SELECT md5(coalesce(group_concat(concat_ws('|', {}) ORDER BY {key} SEPARATOR ';'), '')) FROM {t}",
            my.join(", ")
        ),
    )
}

/// A PostgreSQL schema with the same kinds of things, for the other directions.
fn pg_shop(s: &PgSchema) {
    s.sql(
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
         CREATE TABLE authors (id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, handle text NOT NULL UNIQUE,
           mood mood NOT NULL DEFAULT 'ok', active boolean NOT NULL DEFAULT true, joined timestamptz NOT NULL DEFAULT now());
         COMMENT ON TABLE authors IS 'people who write';
         CREATE TABLE posts (id bigserial PRIMARY KEY, author_id integer NOT NULL REFERENCES authors(id) ON DELETE CASCADE,
           title varchar(200) NOT NULL DEFAULT 'untitled', body text, score numeric(6,2) DEFAULT 0, raw bytea);
         CREATE INDEX posts_by_author ON posts (author_id, id DESC);
         CREATE TABLE tags (post_id bigint NOT NULL REFERENCES posts(id) ON DELETE CASCADE ON UPDATE CASCADE,
           tag varchar(40) NOT NULL, PRIMARY KEY (post_id, tag));
         CREATE VIEW busy_authors AS SELECT author_id, count(*) FROM posts GROUP BY author_id;
         INSERT INTO authors (id, handle, mood, active, joined) VALUES
           (1, 'ann', 'happy', true, '2024-01-01 00:00:00+00'), (2, 'bob', 'sad', false, '2024-02-01 12:00:00+00'), (7, 'cy', 'ok', true, '2024-03-01 00:00:00+00');
         SELECT setval(pg_get_serial_sequence('authors', 'id'), 30);
         INSERT INTO posts (id, author_id, title, body, score, raw) VALUES
           (1, 1, 'hello', '', 1.50, '\\x00ff'), (2, 1, 'again', NULL, NULL, NULL), (5, 7, 'x', 'y', -2.25, '\\x');
         INSERT INTO tags VALUES (1, 'intro'), (1, 'misc'), (5, 'misc');",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_schema_moves_to_mariadb_with_its_schema() {
    let Some(src) = PgSchema::new("ferry_mig_pgsrc") else {
        return;
    };
    pg_shop(&src);
    let tmp = tempfile::tempdir().unwrap();
    let pg = pg_url();
    let rig = Rig::start(&[RigSource {
        name: "blog",
        kind: "postgres",
        url: &pg,
        extra: "",
    }])
    .await;
    for via in [Via::Run(tmp.path()), Via::Tunnel(&rig)] {
        let dst = MyDb::new("ferry_mig_mydst").expect("MariaDB");
        postgres_to_mariadb(&via, &src, &dst).await;
    }
    rig.stop().await;
}

/// `pg_shop` into MariaDB `dst`, run `via`, checked; then again with `existing: truncate`.
async fn postgres_to_mariadb(via: &Via<'_>, src: &PgSchema, dst: &MyDb) {
    let job = format!(
        "reader:\n  name: postgresqlreader\n  parameter:\n    {{source}}\n    tables: [\"{s}.*\"]\n\
         writer:\n  name: mysqlwriter\n  parameter:\n    url: {my}\n    createTable: true\n\
         setting:\n  speed: {{channel: 2}}\n",
        s = src.name,
        my = dst.url()
    );
    let (ok, out) = via.run(&job, &pg_url(), "blog").await;
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("view {}.busy_authors", src.name)),
        "{out}"
    );
    for t in ["authors", "posts", "tags"] {
        assert_eq!(
            one(dst.sql(&format!("SELECT count(*) FROM {t}"))),
            one(src.sql(&format!("SELECT count(*) FROM {t}"))),
            "{t}"
        );
    }
    assert_eq!(
        one(dst.sql("SELECT group_concat(concat_ws('|', authors.id, handle, mood, active, coalesce(hex(raw), 'NULL')) ORDER BY authors.id SEPARATOR ';') FROM authors LEFT JOIN posts p ON p.id = authors.id")),
        "1|ann|happy|1|00FF;2|bob|sad|0|NULL;7|cy|ok|1|NULL"
    );
    let create = |t: &str| dst.sql(&format!("SHOW CREATE TABLE {t}"));
    let authors = create("authors");
    for want in [
        "`id` int(11) NOT NULL AUTO_INCREMENT",
        "`handle` varchar(768) NOT NULL",
        "`mood` enum('sad','ok','happy') NOT NULL DEFAULT 'ok'",
        "`active` tinyint(1) NOT NULL DEFAULT 1",
        "`joined` timestamp(6) NOT NULL DEFAULT current_timestamp(6)",
        "PRIMARY KEY (`id`)",
        "UNIQUE KEY `authors_handle_key` (`handle`)",
        "AUTO_INCREMENT=31",
        "COMMENT='people who write'",
    ] {
        assert!(authors.contains(want), "{want} in {authors}");
    }
    let posts = create("posts");
    for want in [
        "`id` bigint(20) NOT NULL AUTO_INCREMENT",
        "`title` varchar(200) NOT NULL DEFAULT 'untitled'",
        "`score` decimal(6,2) DEFAULT 0",
        "KEY `posts_by_author` (`author_id`,`id` DESC)",
        "CONSTRAINT `posts_author_id_fkey` FOREIGN KEY (`author_id`) REFERENCES `authors` (`id`) ON DELETE CASCADE",
    ] {
        assert!(posts.contains(want), "{want} in {posts}");
    }
    let tags = create("tags");
    for want in [
        "PRIMARY KEY (`post_id`,`tag`)",
        "FOREIGN KEY (`post_id`) REFERENCES `posts` (`id`) ON DELETE CASCADE ON UPDATE CASCADE",
    ] {
        assert!(tags.contains(want), "{want} in {tags}");
    }
    // The next id is past the source's sequence.
    assert_eq!(
        one(dst.sql("INSERT INTO authors (handle) VALUES ('new'); SELECT LAST_INSERT_ID()")),
        "31"
    );

    // Again, truncating: the tables are emptied together with the foreign key checks off,
    // their foreign keys set aside during the load and added again.
    let again = job.replace(
        "    createTable: true\n",
        "    createTable: true\n    existing: truncate\n",
    );
    let (ok, out) = via.run(&again, &pg_url(), "blog").await;
    assert!(ok, "{out}");
    assert_eq!(one(dst.sql("SELECT count(*) FROM authors")), "3");
    assert_eq!(one(dst.sql("SELECT count(*) FROM tags")), "3");
    let tags = create("tags");
    assert!(
        tags.contains(
            "FOREIGN KEY (`post_id`) REFERENCES `posts` (`id`) ON DELETE CASCADE ON UPDATE CASCADE"
        ),
        "{tags}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_and_postgres_databases_move_to_sqlite() {
    let Some(my) = MyDb::new("ferry_mig_sqsrc") else {
        return;
    };
    let Some(pg) = PgSchema::new("ferry_mig_sqpg") else {
        return;
    };
    my.sql(SHOP);
    pg_shop(&pg);
    let (my_url, pg_url) = (my.url(), pg_url());
    let rig = Rig::start(&[
        RigSource {
            name: "shop",
            kind: "mysql",
            url: &my_url,
            extra: "",
        },
        RigSource {
            name: "blog",
            kind: "postgres",
            url: &pg_url,
            extra: "",
        },
    ])
    .await;
    let (run_dir, tunnel_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (via, dir) in [
        (Via::Run(run_dir.path()), run_dir.path()),
        (Via::Tunnel(&rig), tunnel_dir.path()),
    ] {
        into_sqlite(&via, dir, &my_url, &pg_url, &pg.name).await;
    }
    rig.stop().await;
}

/// The shop (MariaDB) and `pg_shop` (PostgreSQL schema `schema`) into SQLite files in
/// `dir`, run `via`, checked.
async fn into_sqlite(
    via: &Via<'_>,
    dir: &std::path::Path,
    my_url: &str,
    pg_url: &str,
    schema: &str,
) {
    let tmp = dir;
    for (reader, url, name, tables, file, n) in [
        (
            "mysqlreader",
            my_url,
            "shop",
            "\"*\"".to_string(),
            "shop.db",
            16,
        ),
        (
            "postgresqlreader",
            pg_url,
            "blog",
            format!("\"{schema}.*\""),
            "blog.db",
            3,
        ),
    ] {
        let db = tmp.join(file);
        let job = format!(
            "reader:\n  name: {reader}\n  parameter:\n    {{source}}\n    tables: [{tables}]\n\
             writer:\n  name: sqlitewriter\n  parameter:\n    url: sqlite://{}\n    createTable: true\n\
             setting:\n  speed: {{channel: 2}}\n",
            db.display()
        );
        let (ok, out) = via.run(&job, url, name).await;
        assert!(ok, "{out}");
        assert!(
            out.contains(&format!("Tables                : {n}")),
            "{out}"
        );
    }
    let sqlite = |file: &str, sql: &str| {
        let out = std::process::Command::new("sqlite3")
            .arg(tmp.join(file))
            .arg(sql)
            .output()
            .expect("sqlite3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let schema = sqlite("shop.db", ".schema customers");
    for want in [
        "\"id\" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL",
        "CHECK (\"tier\" IN ('free', 'pro', 'team'))",
        "\"created_at\" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP",
        "CREATE UNIQUE INDEX \"customers_uq_email\"",
    ] {
        assert!(schema.contains(want), "{want} in {schema}");
    }
    let addresses = sqlite("shop.db", ".schema addresses");
    assert!(
        addresses.contains("PRIMARY KEY (\"customer_id\", \"seq\")")
            && addresses
                .contains("REFERENCES \"customers\" (\"id\") ON DELETE CASCADE ON UPDATE CASCADE"),
        "{addresses}"
    );
    assert_eq!(sqlite("shop.db", "SELECT count(*) FROM order_items"), "4");
    assert_eq!(
        sqlite("shop.db", "PRAGMA foreign_key_check"),
        "",
        "every row has its parent"
    );
    assert_eq!(
        sqlite(
            "shop.db",
            "INSERT INTO customers (email) VALUES ('n@x') RETURNING id"
        ),
        "50"
    );
    let posts = sqlite("blog.db", ".schema posts");
    assert!(
        posts.contains("DEFAULT 'untitled'")
            && posts.contains("REFERENCES \"authors\" (\"id\") ON DELETE CASCADE"),
        "{posts}"
    );
    assert_eq!(
        sqlite(
            "blog.db",
            "INSERT INTO authors (handle) VALUES ('n') RETURNING id"
        ),
        "31"
    );
}

#[test]
fn plan_prints_the_ddl_and_flags_lossy_conversions_without_touching_the_target() {
    let Some(src) = MyDb::new("ferry_mig_plan") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_mig_plandst") else {
        return;
    };
    src.sql(SHOP);
    let tmp = tempfile::tempdir().unwrap();
    let job = format!(
        "reader:\n  name: mysqlreader\n  parameter:\n    url: {src}\n    tables: [\"*\"]\n    exclude: [\"legacy_*\", \"audit_log\"]\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {pg}\n    schema: {d}\n    createTable: true\n",
        src = src.url(),
        pg = pg_url(),
        d = dst.name
    );
    let path = tmp.path().join("job.yaml");
    std::fs::write(&path, job).unwrap();
    let out = ferry_tests::proc::ferry(tmp.path(), &["job", "plan", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("-- customers -> "), "{text}");
    assert!(!text.contains("-- legacy_events"), "excluded: {text}");
    assert!(!text.contains("-- audit_log"), "excluded: {text}");
    for want in [
        "CREATE TABLE IF NOT EXISTS",
        "AS ENUM (E'free', E'pro', E'team')",
        "CREATE UNIQUE INDEX IF NOT EXISTS \"customers_uq_email\"",
        "ON DELETE CASCADE ON UPDATE CASCADE",
        "-- ! column id: INT UNSIGNED",
        "-- ! column location: geometry is bytea",
        "-- ! column flags: SET is text",
        "-- ! column created_at: NOT NULL kept: a zero date",
        "-- ! column email: collation utf8mb4_general_ci ignores case or accents; PostgreSQL compares exactly",
        "-- not migrated: view order_totals",
        "-- 14 tables,",
    ] {
        assert!(text.contains(want), "{want} in\n{text}");
    }
    assert_eq!(
        one(dst.sql(&format!(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '{}'",
            dst.name
        ))),
        "0",
        "plan creates nothing"
    );
    // `ferry run --dry-run` prints the same.
    let dry = ferry_tests::proc::ferry(tmp.path(), &["run", "--dry-run", path.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&dry.stdout), text);
}

mod common;
use common::{Rig, RigSource};

/// Where a test's job runs: `ferry run` in a directory, or through a rig's agent and broker.
enum Via<'a> {
    Run(&'a std::path::Path),
    Tunnel(&'a Rig),
}

impl Via<'_> {
    /// Runs `job`, whose reader's location is the line `{source}`: `url` for `ferry run`,
    /// the rig's data source `name` through the tunnel. Whether it succeeded, and its
    /// summary and errors.
    async fn run(&self, job: &str, url: &str, name: &str) -> (bool, String) {
        match self {
            Via::Run(dir) => {
                let job = job.replace("{source}", &format!("url: {url}"));
                let (ok, out, err) = ferry_tests::proc::ferry_run_job(dir, &job, &["--quiet"]);
                (ok, format!("{out}\n{err}"))
            }
            Via::Tunnel(rig) => {
                let job = job.replace("{source}", &format!("datasource: {}", rig.datasource(name)));
                let s = rig.run(&job).await;
                let text = format!(
                    "{}\n{}",
                    s.summary
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    s.error.as_deref().unwrap_or_default()
                );
                (s.state == ferry_broker::jobs::JobState::Succeeded, text)
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_database_job_runs_through_the_tunnel_within_the_agents_policy() {
    let Some(src) = MyDb::new("ferry_mig_tun") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_mig_tundst") else {
        return;
    };
    src.sql(SHOP);
    let url = src.url();
    // The agent lets jobs read four tables; a whole-database job sees those only.
    let rig = Rig::start(&[
        RigSource {
            name: "shop",
            kind: "mysql",
            url: &url,
            extra: "",
        },
        RigSource {
            name: "shop_part",
            kind: "mysql",
            url: &url,
            extra: "tables = [\"customers\", \"addresses\", \"orders\", \"order_items\"]",
        },
    ])
    .await;
    let job = |ds: &str, schema: &str| {
        format!(
            "reader:\n  name: mysqlreader\n  parameter:\n    datasource: {}\n    tables: [\"*\"]\n\
             writer:\n  name: postgresqlwriter\n  parameter:\n    url: {}\n    schema: {schema}\n    createTable: true\n\
             setting:\n  speed: {{channel: 3}}\n",
            rig.datasource(ds),
            pg_url(),
        )
    };
    let status = rig.run(&job("shop", &dst.name)).await;
    let summary = status.summary.clone().expect("a summary");
    assert!(summary.succeeded(), "{summary}");
    assert_eq!(summary.tables.len(), 16, "{summary}");
    assert!(summary.wire_bytes > 0, "through the tunnel: {summary}");
    // The job's own progress (what the API shows while it runs) adds its tables up.
    assert_eq!(status.progress.records_written, summary.records_written);
    assert_eq!(status.progress.wire_bytes, summary.wire_bytes);
    assert_eq!(status.progress.splits_done, summary.splits as u64);
    assert_eq!(summary.not_migrated, vec!["view order_totals".to_string()]);
    assert_eq!(summary.changes.total(), 2, "{summary}");
    // Every row and the whole catalog, as after `ferry run`.
    check_shop_in_postgres(&src, &dst);

    // The narrower source: four tables, and only the foreign keys among them.
    let part = PgSchema::new("ferry_mig_tunpart").expect("PostgreSQL");
    let status = rig.run(&job("shop_part", &part.name)).await;
    let summary = status.summary.clone().expect("a summary");
    assert!(summary.succeeded(), "{summary}");
    let mut moved: Vec<&str> = summary.tables.iter().map(|t| t.source.as_str()).collect();
    moved.sort();
    assert_eq!(moved, ["addresses", "customers", "order_items", "orders"]);
    assert!(
        summary.not_migrated.is_empty(),
        "no view of another name is named: {summary}"
    );
    assert_eq!(
        one(part.sql(&format!(
            "SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint WHERE contype = 'f' AND connamespace = '{}'::regnamespace",
            part.name
        ))),
        "addresses_fk_addr_customer,order_items_fk_item_order,orders_fk_order_customer",
        "the key to products, which the agent does not let jobs read, is not created"
    );
    rig.stop().await;
}

#[test]
fn running_a_database_job_again_is_explicit_per_table() {
    let Some(src) = MyDb::new("ferry_mig_again") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_mig_againdst") else {
        return;
    };
    src.sql(SHOP);
    let tmp = tempfile::tempdir().unwrap();
    let job = |extra: &str| {
        format!(
            "reader:\n  name: mysqlreader\n  parameter:\n    url: {src}\n    tables: [\"*\"]\n\
             writer:\n  name: postgresqlwriter\n  parameter:\n    url: {pg}\n    schema: {d}\n    createTable: true\n{extra}\
             setting:\n  speed: {{channel: 3}}\n",
            src = src.url(),
            pg = pg_url(),
            d = dst.name
        )
    };
    let counts = || {
        TABLES
            .iter()
            .map(|t| one(dst.sql(&format!("SELECT count(*) FROM {t}"))))
            .collect::<Vec<_>>()
    };
    let (ok, out, err) = ferry_tests::proc::ferry_run_job(tmp.path(), &job(""), &["--quiet"]);
    assert!(ok, "{out}\n{err}");
    let loaded = counts();

    // The same job again: every table refused before a row is written.
    let (ok, out, err) = ferry_tests::proc::ferry_run_job(tmp.path(), &job(""), &["--quiet"]);
    assert!(!ok, "{out}");
    assert!(err.contains("16 of 16 tables failed"), "{err}");
    assert!(out.contains("already holds rows"), "{out}");
    assert_eq!(counts(), loaded, "nothing written");

    // truncate for all, drop for one: the tables are emptied together (their foreign
    // keys refer to each other), reloaded, and the keys added again.
    dst.sql("INSERT INTO legacy_events (id, label) VALUES (99, 'only in the target')");
    let (ok, out, err) = ferry_tests::proc::ferry_run_job(
        tmp.path(),
        &job("    existing: truncate\n    existingTables: {\"legacy_*\": drop}\n"),
        &["--quiet"],
    );
    assert!(ok, "{out}\n{err}");
    assert_eq!(counts(), loaded);
    assert_eq!(
        one(dst.sql(&format!(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND connamespace = '{}'::regnamespace",
            dst.name
        ))),
        "14"
    );
    assert_eq!(
        one(dst.sql("SELECT count(*) FROM legacy_events WHERE id = 99")),
        "0",
        "dropped and created again"
    );
}

#[test]
fn a_table_that_fails_before_a_row_is_written_leaves_no_empty_table() {
    let Some(src) = MyDb::new("ferry_mig_fail") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_mig_faildst") else {
        return;
    };
    src.sql(
        "SET SESSION sql_mode = '';
         CREATE TABLE good (id int PRIMARY KEY, v varchar(10));
         CREATE TABLE bad (id int PRIMARY KEY, d date NOT NULL);
         INSERT INTO good VALUES (1, 'a'), (2, 'b');
         INSERT INTO bad VALUES (1, '0000-00-00');",
    );
    let tmp = tempfile::tempdir().unwrap();
    let job = format!(
        "reader:\n  name: mysqlreader\n  parameter:\n    url: {src}\n    tables: [\"*\"]\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {pg}\n    schema: {d}\n    createTable: true\n\
         setting:\n  errorLimit: {{record: 0}}\n",
        src = src.url(),
        pg = pg_url(),
        d = dst.name
    );
    let (ok, out, err) = ferry_tests::proc::ferry_run_job(tmp.path(), &job, &["--quiet"]);
    assert!(!ok, "{out}");
    assert!(err.contains("1 of 2 tables failed: bad"), "{err}");
    assert!(
        out.contains("(the table it created is dropped again)"),
        "{out}"
    );
    // The zero date in a NOT NULL column is a dirty row, not a schema change.
    assert!(
        out.lines()
            .any(|l| l.starts_with("bad") && l.contains("  1  FAILED")),
        "{out}"
    );
    assert_eq!(one(dst.sql("SELECT count(*) FROM good")), "2");
    assert_eq!(
        one(dst.sql(&format!(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = '{}' AND c.relname = 'bad'",
            dst.name
        ))),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_whole_database_job_loads_only_the_tables_that_did_not_finish() {
    let Some(src) = MyDb::new("ferry_mig_resume") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_mig_resumedst") else {
        return;
    };
    src.sql(
        "SET SESSION sql_mode = '';
         CREATE TABLE good (id int PRIMARY KEY, v varchar(10));
         CREATE TABLE child (id int PRIMARY KEY, good_id int NOT NULL,
           CONSTRAINT fk_child_good FOREIGN KEY (good_id) REFERENCES good (id) ON DELETE CASCADE);
         CREATE TABLE bad (id int PRIMARY KEY, d date NOT NULL, KEY idx_d (d));
         INSERT INTO good VALUES (1, 'a'), (2, 'b');
         INSERT INTO child VALUES (10, 1), (11, 2);
         INSERT INTO bad VALUES (1, '0000-00-00'), (2, '2020-01-01');",
    );
    let url = src.url();
    let rig = Rig::start(&[RigSource {
        name: "shop",
        kind: "mysql",
        url: &url,
        extra: "",
    }])
    .await;
    let job = format!(
        "reader:\n  name: mysqlreader\n  parameter:\n    datasource: {}\n    tables: [\"*\"]\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {}\n    schema: {}\n    createTable: true\n\
         setting:\n  speed: {{channel: 2}}\n  errorLimit: {{record: 0}}\n",
        rig.datasource("shop"),
        pg_url(),
        dst.name
    );
    let failed = rig.run(&job).await;
    assert_eq!(failed.state, ferry_broker::jobs::JobState::Failed);
    let summary = failed.summary.clone().expect("a summary");
    assert_eq!(summary.failed_tables(), vec!["bad"], "{summary}");
    // The zero date is a dirty row; the other row may be in the target or not (bad's
    // splits run side by side), and with none written the table is dropped again.
    let gone = one(dst.sql(&format!("SELECT to_regclass('{}.bad') IS NULL", dst.name)));
    if gone == "f" {
        assert!(one(dst.sql("SELECT count(*) FROM bad")).as_str() < "2");
    }

    // The source is mended (and gains a row in a table that loaded, which a resume
    // must not read again).
    src.sql("UPDATE bad SET d = '2021-02-03' WHERE id = 1; INSERT INTO good VALUES (3, 'late');");
    assert_eq!(rig.resume(&failed.id).await, 202);
    let status = rig
        .wait(&failed.id, std::time::Duration::from_secs(120))
        .await;
    let summary = status.summary.clone().expect("a summary");
    assert_eq!(
        status.state,
        ferry_broker::jobs::JobState::Succeeded,
        "{summary}"
    );
    let earlier: Vec<&str> = summary
        .tables
        .iter()
        .filter(|l| l.earlier)
        .map(|l| l.source.as_str())
        .collect();
    assert_eq!(earlier, ["child", "good"], "{summary}");
    assert!(
        summary
            .to_string()
            .contains("ok (loaded by an earlier run)"),
        "{summary}"
    );
    // bad loaded from the start, once: the job owned it (it created it).
    assert_eq!(
        dst.sql("SELECT id || ' ' || d FROM bad ORDER BY id"),
        "1 2021-02-03\n2 2020-01-01\n"
    );
    assert_eq!(
        one(dst.sql("SELECT count(*) FROM good")),
        "2",
        "not read again"
    );
    assert_eq!(
        one(dst.sql(&format!(
            "SELECT string_agg(conname, ',') FROM pg_constraint WHERE contype = 'f' AND connamespace = '{}'::regnamespace",
            dst.name
        ))),
        "child_fk_child_good"
    );
    assert_eq!(
        one(dst.sql(&format!(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = '{}' AND tablename = 'bad' AND indexdef LIKE '%(d)%'",
            dst.name
        ))),
        "1"
    );
    rig.stop().await;
}

#[test]
fn a_type_map_makes_flags_booleans_and_geometries_standard_wkb() {
    let Some(src) = MyDb::new("ferry_mig_types") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_mig_typesdst") else {
        return;
    };
    src.sql(SHOP);
    src.sql(
        "INSERT INTO products VALUES (8, 'SKU-0008', NULL, 1.00, NULL, 2, 'odd flag');
         INSERT INTO warehouses VALUES ('HAM1', ST_GeomFromText('POINT(10 53.5)', 4326), NULL);",
    );
    let tmp = tempfile::tempdir().unwrap();
    let job = format!(
        "reader:\n  name: mysqlreader\n  parameter:\n    url: {src}\n    tables: [categories, products, warehouses]\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {pg}\n    schema: {d}\n    createTable: true\n\
         \x20   typeMap: {{\"tinyint(1)\": boolean, geometry: wkb}}\n",
        src = src.url(),
        pg = pg_url(),
        d = dst.name
    );
    let (ok, out, err) = ferry_tests::proc::ferry_run_job(tmp.path(), &job, &["--quiet"]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("products.active: 1 value other than 0 or 1 written as true"),
        "{out}"
    );
    assert!(out.contains("warehouses.location: 1 SRID dropped"), "{out}");
    assert_eq!(
        dst.sql(&format!(
            "SELECT data_type || ' ' || column_default FROM information_schema.columns \
             WHERE table_schema = '{}' AND table_name = 'products' AND column_name = 'active'",
            dst.name
        )),
        "boolean true\n"
    );
    assert_eq!(
        dst.sql("SELECT id || ' ' || active FROM products ORDER BY id"),
        "1 true\n2 false\n7 true\n8 true\n"
    );
    assert_eq!(
        dst.sql("SELECT code || ' ' || coalesce(upper(encode(location, 'hex')), '-') FROM warehouses ORDER BY code"),
        src.sql("SELECT CONCAT(code, ' ', coalesce(HEX(ST_AsWKB(location)), '-')) FROM warehouses ORDER BY code"),
        "standard WKB, as ST_AsWKB gives it"
    );
}

/// A whole-database job a broker stopped while it ran is picked up by the next broker on
/// the same state: the tables that had loaded are not loaded again, the others are, and
/// every row is in the target once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_database_job_goes_on_after_a_broker_restart() {
    use std::time::{Duration, Instant};
    let Some(src) = MyDb::new("ferry_mig_restart") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_mig_restartdst") else {
        return;
    };
    let mut ddl = String::new();
    // t0 is small: it loads well before the others.
    let rows = |t: usize| if t == 0 { 60 } else { 400 };
    for t in 0..6 {
        ddl.push_str(&format!(
            "CREATE TABLE t{t} (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL);
             INSERT INTO t{t} SELECT seq, CONCAT('row ', seq) FROM seq_1_to_{};",
            rows(t)
        ));
    }
    src.sql(&ddl);
    let setup = common::Setup::new();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", ferry_tests::proc::free_port())
        .parse()
        .unwrap();
    let config = setup.broker_config(addr);
    let broker = ferry_broker::Broker::start(config.clone(), ferry_broker::data::refuse_all())
        .await
        .expect("broker starts");
    let cert = setup.pki.agent("restart-1", "idc-restart");
    let mut text = setup.pki.agent_toml(&cert, &addr.to_string(), "localhost");
    text.push_str(&format!(
        "\n[sources.shop]\nkind = \"mysql\"\nurl = \"{}\"\n",
        src.url()
    ));
    let agent_config: ferry_agent::AgentConfig = common::toml_from(&text);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(async move {
        let _ = ferry_agent::run(agent_config, async {
            let _ = stopped.await;
        })
        .await;
    });
    common::eventually("the agent registers", Duration::from_secs(20), || {
        !broker.registry().list().is_empty()
    })
    .await;
    // About 7 s at 300 rows/s: the broker stops while some tables are still loading.
    // (Splits of all tables share the job's slots and rate, so most finish near the end.)
    let job = format!(
        "reader:\n  name: mysqlreader\n  parameter:\n    datasource: idc-restart/shop\n    tables: [\"*\"]\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {}\n    schema: {}\n    createTable: true\n\
         setting:\n  speed: {{channel: 2, record: 300}}\n",
        pg_url(),
        dst.name
    );
    let id = broker
        .submit(&job, ferry_engine::config::default_vars(), None)
        .await
        .expect("job submitted");
    // Stopped once a table has loaded (its primary key is built after its load).
    let start = Instant::now();
    let keys = format!(
        "SELECT count(*) FROM pg_constraint WHERE contype = 'p' AND connamespace = '{}'::regnamespace \
         AND conname ~ '^t[0-9]_pkey$'",
        dst.name
    );
    while one(dst.sql(&keys)) == "0" {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no table loads: {:?}",
            broker.jobs().get(&id).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its end is recorded just after.
    tokio::time::sleep(Duration::from_millis(700)).await;
    broker.shutdown().await;

    let broker = ferry_broker::Broker::start(config, ferry_broker::data::refuse_all())
        .await
        .expect("the broker starts again");
    let start = Instant::now();
    let status = loop {
        let s = broker.jobs().get(&id).await.unwrap().expect("the job");
        if s.state != ferry_broker::jobs::JobState::Running {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the job does not end: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let summary = status.summary.clone().expect("a summary");
    assert_eq!(
        status.state,
        ferry_broker::jobs::JobState::Succeeded,
        "{summary}"
    );
    assert!(status.resumes >= 1, "{status:?}");
    assert!(
        summary.tables.iter().any(|l| l.earlier),
        "some tables had loaded before the stop: {summary}"
    );
    assert!(
        summary.tables.iter().any(|l| !l.earlier),
        "some had not: {summary}"
    );
    for t in 0..6 {
        let n = rows(t);
        assert_eq!(
            dst.sql(&format!(
                "SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || sum(id) FROM t{t}"
            )),
            format!("{n} {n} {}\n", n * (n + 1) / 2),
            "t{t}"
        );
    }
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), agent).await;
    broker.shutdown().await;
}
