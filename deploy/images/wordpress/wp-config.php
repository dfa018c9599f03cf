<?php
/**
 * WordPress configuration of a WooStore shop, read from the environment helm/store sets.
 * Holds no secret itself: the database password comes from WORDPRESS_DB_PASSWORD (a
 * Secret), the keys and salts from a file the entrypoint writes into the store's volume.
 * Holds no URL either: the store's URL is WordPress's own (the home and siteurl options in
 * its database), so a new host for the store restarts no pod.
 */

define( 'DB_NAME', getenv( 'WORDPRESS_DB_NAME' ) ?: 'wordpress' );
define( 'DB_USER', getenv( 'WORDPRESS_DB_USER' ) ?: 'wordpress' );
define( 'DB_PASSWORD', getenv( 'WORDPRESS_DB_PASSWORD' ) ?: '' );
define( 'DB_HOST', getenv( 'WORDPRESS_DB_HOST' ) ?: 'mariadb:3306' );
define( 'DB_CHARSET', 'utf8mb4' );
define( 'DB_COLLATE', '' );
$table_prefix = 'wp_';

// Keys and salts of this store: random, made on its first start (woostore-entrypoint),
// made anew by `wp woostore shuffle-salts`.
require __DIR__ . '/wp-content/woostore-salts.php';

// The image's must-use plugin (woostore-mu-plugin.php): home and siteurl in the scheme of
// WOOSTORE_URL_SCHEME, and `wp woostore shuffle-salts`. Root's, outside the store's volume.
define( 'WPMU_PLUGIN_DIR', '/usr/src/woostore/mu-plugins' );

// TLS ends at the ingress controller, the only client the store's NetworkPolicy admits.
if ( isset( $_SERVER['HTTP_X_FORWARDED_PROTO'] ) && 'https' === $_SERVER['HTTP_X_FORWARDED_PROTO'] ) {
	$_SERVER['HTTPS'] = 'on';
}

// Core and plugins come from the image: no installs or updates from the admin screens.
define( 'DISALLOW_FILE_MODS', true );
define( 'AUTOMATIC_UPDATER_DISABLED', true );
// No role may post script or other unfiltered HTML, administrators included: pages are
// served on a domain next to the platform's dashboard.
define( 'DISALLOW_UNFILTERED_HTML', true );
// Store pods have no egress: fail outgoing HTTP at once instead of waiting for timeouts.
define( 'WP_HTTP_BLOCK_EXTERNAL', true );
// Nor may WordPress call itself: WP-Cron's request to its own URL on page loads would be
// blocked. The pod's `cron` container runs the due events instead (woostore-cron).
define( 'DISABLE_WP_CRON', true );

define( 'WP_DEBUG', false );

if ( ! defined( 'ABSPATH' ) ) {
	define( 'ABSPATH', __DIR__ . '/' );
}
require_once ABSPATH . 'wp-settings.php';
