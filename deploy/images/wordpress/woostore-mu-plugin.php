<?php
/**
 * Plugin Name: WooStore
 * Description: What every WooStore shop gets from the platform: its URLs in the scheme it is
 *   served with, and the WP-CLI command `wp woostore shuffle-salts`.
 *
 * A must-use plugin of the image, in /usr/src/woostore/mu-plugins (WPMU_PLUGIN_DIR, set in
 * wp-config.php): owned by root, outside the store's volume, so every store runs the version
 * its image brings and nobody can change it from WordPress.
 */

defined( 'ABSPATH' ) || exit;

/**
 * The store's URL is WordPress's own: the home and siteurl options, set by
 * `wp core install --url` and changed by `wp search-replace`, so giving a store a new host
 * restarts nothing. Only the scheme comes from the pod, WOOSTORE_URL_SCHEME (helm/store sets
 * "https" when its Ingress terminates TLS), as the pod keeps it whatever the host: a store
 * installed with an http:// URL is served, and links to itself, as https://.
 *
 * The store image keeps its tag across releases, so a store still on an earlier helm/store
 * may run this image: that chart set no WOOSTORE_URL_SCHEME but WOOSTORE_SITE_URL (its whole
 * URL, of which only the scheme is taken here), until the store is upgraded.
 *
 * @param mixed $url The option's value, as stored.
 * @return mixed The same URL in the pod's scheme.
 */
function woostore_url_in_scheme( $url ) {
	$scheme = getenv( 'WOOSTORE_URL_SCHEME' );
	if ( false === $scheme ) {
		$scheme = parse_url( (string) getenv( 'WOOSTORE_SITE_URL' ), PHP_URL_SCHEME );
	}
	if ( ! is_string( $url ) || ! in_array( $scheme, array( 'http', 'https' ), true ) ) {
		return $url;
	}
	return preg_replace( '#^https?://#i', $scheme . '://', $url );
}
add_filter( 'option_home', 'woostore_url_in_scheme' );
add_filter( 'option_siteurl', 'woostore_url_in_scheme' );

/**
 * Gives the store new random keys and salts: every login cookie and nonce made with the old
 * ones stops working. Rewrites wp-content/woostore-salts.php, in the format the image's
 * entrypoint writes it on the store's first start, all at once: the new file is written and
 * flushed beside the old one, then renamed over it, so WordPress never reads half a file.
 * Apache's PHP sees the new file within opcache's revalidation period (2 s in the base image).
 */
function woostore_shuffle_salts() {
	$path = WP_CONTENT_DIR . '/woostore-salts.php';
	$php  = "<?php\n";
	foreach ( array(
		'AUTH_KEY',
		'SECURE_AUTH_KEY',
		'LOGGED_IN_KEY',
		'NONCE_KEY',
		'AUTH_SALT',
		'SECURE_AUTH_SALT',
		'LOGGED_IN_SALT',
		'NONCE_SALT',
	) as $name ) {
		$php .= sprintf( "define(%s, %s);\n", var_export( $name, true ), var_export( bin2hex( random_bytes( 32 ) ), true ) );
	}
	// A name of its own ('x': made here, never an existing file), on the same file system.
	$temporary = $path . '.' . bin2hex( random_bytes( 8 ) ) . '.new';
	$file      = fopen( $temporary, 'x' );
	$written   = false !== $file
		&& strlen( $php ) === fwrite( $file, $php )
		&& fflush( $file )
		&& fsync( $file );
	if ( false !== $file ) {
		fclose( $file );
	}
	// Readable by the web server's group only, as the entrypoint makes it (umask 027).
	if ( ! $written || ! chmod( $temporary, 0640 ) || ! rename( $temporary, $path ) ) {
		if ( file_exists( $temporary ) ) {
			unlink( $temporary );
		}
		WP_CLI::error( 'Could not rewrite wp-content/woostore-salts.php.' );
	}
	WP_CLI::success( 'Shuffled the keys and salts in wp-content/woostore-salts.php.' );
}

if ( defined( 'WP_CLI' ) && WP_CLI ) {
	WP_CLI::add_command( 'woostore shuffle-salts', 'woostore_shuffle_salts' );
}
