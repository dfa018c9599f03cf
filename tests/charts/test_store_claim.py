"""A store claimed from the warm pool gets its owner's host and name with a helm upgrade of the
same release: that upgrade must change the Ingress alone, never a pod template, so that no
pod restarts on a claim. WordPress keeps its URL in its database; the pod knows only the
scheme (WOOSTORE_URL_SCHEME), which the image's must-use plugin applies.

Rendered with the real helm v4 (fixtures in conftest.py, helpers in chart.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.charts.chart import (
    PROFILES,
    REPO,
    WORKLOAD_KINDS,
    Manifest,
    by_kind,
    is_helm_test,
    render,
)

WORDPRESS = REPO / "deploy" / "images" / "wordpress"
POOL = ("pool-7f3a9c.shops.example.test", "WooStore pool store")
OWNER = ("acme-42.shops.example.test", "Acme Coffee ☕ & Tea")


def released(
    env: dict[str, str], profile: str, host: str, name: str
) -> dict[tuple[str, str], Manifest]:
    """What a helm upgrade applies, by kind and name. The helm test pod is left out: it is a
    hook, run by `helm test` only, never applied by an upgrade."""
    docs = render(env, *PROFILES[profile], "--set-string", f"storeName={name}", host=host)
    return {(d["kind"], d["metadata"]["name"]): d for d in docs if not is_helm_test(d)}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_a_new_host_and_store_name_change_the_ingress_and_nothing_else(
    helm_env: dict[str, str], profile: str
) -> None:
    pool = released(helm_env, profile, *POOL)
    owner = released(helm_env, profile, *OWNER)

    assert pool.keys() == owner.keys()
    changed = sorted(key for key in pool if pool[key] != owner[key])
    assert changed == [("Ingress", "store")]
    ingress = owner[("Ingress", "store")]
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == [OWNER[0]]
    assert ingress["metadata"]["annotations"]["woostore.io/store-name"] == OWNER[1]
    for tls in ingress["spec"].get("tls", []):
        assert tls["hosts"] == [OWNER[0]]
    # Said outright: the pods' templates are the same, so none is replaced.
    workloads = [key for key in pool if key[0] in WORKLOAD_KINDS]
    assert {kind for kind, _ in workloads} == {"Deployment", "StatefulSet"}
    for key in workloads:
        assert pool[key]["spec"]["template"] == owner[key]["spec"]["template"], key


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_no_pod_is_told_the_host_or_the_store_name(helm_env: dict[str, str], profile: str) -> None:
    for key, doc in released(helm_env, profile, *OWNER).items():
        if key[0] in WORKLOAD_KINDS:
            text = json.dumps(doc, ensure_ascii=False)
            assert OWNER[0] not in text, key
            assert OWNER[1] not in text, key


def wordpress_container(docs: list[Manifest]) -> Manifest:
    (deployment,) = by_kind(docs, "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    (container,) = [c for c in containers if c["name"] == "wordpress"]  # the other: cron
    assert isinstance(container, dict)
    return container


@pytest.mark.parametrize(
    ("extra", "scheme"),
    [
        ([], "http"),
        (PROFILES["local"], "http"),
        (PROFILES["prod"], "https"),
        (["--set", "tls.enabled=true"], "https"),
    ],
)
def test_the_pod_knows_only_the_scheme_which_follows_tls(
    helm_env: dict[str, str], extra: list[str], scheme: str
) -> None:
    container = wordpress_container(render(helm_env, *extra))

    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["WOOSTORE_URL_SCHEME"] == scheme
    assert not {"WOOSTORE_SITE_URL", "WOOSTORE_STORE_NAME"} & env.keys()
    # The readiness probe names no host (wp-login.php answers any), and asks as the ingress
    # controller would, so an https store does not answer with a redirect to https.
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"] == "/wp-login.php"
    assert probe["httpHeaders"] == [{"name": "X-Forwarded-Proto", "value": scheme}]


# What the chart set before the URL moved into WordPress's database: the image keeps its tag
# across releases, so it still takes the scheme from there for a store not yet upgraded.
EARLIER_CHART_ENV = {"WOOSTORE_SITE_URL"}


def test_the_image_reads_only_what_the_chart_sets(helm_env: dict[str, str]) -> None:
    """wp-config.php and the must-use plugin read no variable the chart does not set (or an
    earlier chart set), and the plugin's scheme variable is the chart's."""
    chart_env = {e["name"] for e in wordpress_container(render(helm_env))["env"]}
    plugin = (WORDPRESS / "woostore-mu-plugin.php").read_text()
    config = (WORDPRESS / "wp-config.php").read_text()
    read = set(re.findall(r"getenv\( '([A-Z_]+)' \)", plugin + config))
    assert "WOOSTORE_URL_SCHEME" in read
    assert read <= chart_env | EARLIER_CHART_ENV, f"read but never set: {read - chart_env}"
    assert not EARLIER_CHART_ENV & chart_env
    # The URL is WordPress's own: nothing pins it in the configuration.
    assert not re.search(r"\bWP_(HOME|SITEURL)\b", config + plugin)


def test_the_must_use_plugin_is_installed_where_wordpress_looks_for_it() -> None:
    config = (WORDPRESS / "wp-config.php").read_text()
    dockerfile = (WORDPRESS / "Dockerfile").read_text()
    directory = re.search(r"^define\( 'WPMU_PLUGIN_DIR', '([^']+)' \);$", config, re.MULTILINE)
    assert directory, "wp-config.php sets no WPMU_PLUGIN_DIR"
    final_stage = dockerfile.rsplit("\nFROM ", 1)[1]
    copy = re.search(r"^COPY --chown=0:0 woostore-mu-plugin\.php (\S+)$", final_stage, re.MULTILINE)
    assert copy, "the Dockerfile does not copy the must-use plugin, owned by root"
    assert Path(copy.group(1)).parent == Path(directory.group(1))
    assert Path(copy.group(1)).suffix == ".php"
    # Outside the store's volume, where the entrypoint's seed would copy it only once.
    assert not directory.group(1).startswith("/var/www/html/wp-content")
    # Before wp-settings.php, which fixes the must-use plugins' folder.
    assert config.index("WPMU_PLUGIN_DIR") < config.index("wp-settings.php")


def squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_shuffling_salts_writes_the_file_the_entrypoint_writes() -> None:
    """`wp woostore shuffle-salts` rewrites the keys and salts wp-config.php requires: the same
    file, the same eight names, the same line format, renamed into place."""
    plugin = (WORDPRESS / "woostore-mu-plugin.php").read_text()
    entrypoint = (WORDPRESS / "woostore-entrypoint.sh").read_text()
    config = (WORDPRESS / "wp-config.php").read_text()

    assert "require __DIR__ . '/wp-content/woostore-salts.php';" in config
    assert 'salts="$content/woostore-salts.php"' in entrypoint
    assert "$path = WP_CONTENT_DIR . '/woostore-salts.php';" in plugin
    entrypoint_names = re.findall(r'"([A-Z_]+_(?:KEY|SALT))"', entrypoint)
    plugin_names = re.findall(r"'([A-Z_]+_(?:KEY|SALT))'", plugin)
    assert len(entrypoint_names) == 8
    assert plugin_names == entrypoint_names
    # One line per name, the same format and the same random values.
    line = (
        'printf("define(%s,%s);\\n",var_export($name,true),'
        "var_export(bin2hex(random_bytes(32)),true));"
    )
    assert line in squeezed(entrypoint)
    assert "$php.=s" + line in squeezed(plugin)
    assert "rename($temporary,$path)" in squeezed(plugin)
    assert re.search(
        r"if \( defined\( 'WP_CLI' \) && WP_CLI \) \{\s*"
        r"WP_CLI::add_command\( 'woostore shuffle-salts', 'woostore_shuffle_salts' \);",
        plugin,
    )


def test_the_plugin_gives_home_and_siteurl_the_pods_scheme() -> None:
    """The scheme the chart sets is one the plugin applies, to both URL options; wp-config.php
    takes the ingress controller's (and the probe's) X-Forwarded-Proto as the request's."""
    plugin = (WORDPRESS / "woostore-mu-plugin.php").read_text()
    config = (WORDPRESS / "wp-config.php").read_text()
    assert "in_array( $scheme, array( 'http', 'https' ), true )" in plugin
    for option in ("home", "siteurl"):
        assert f"add_filter( 'option_{option}', 'woostore_url_in_scheme' );" in plugin
    assert "'https' === $_SERVER['HTTP_X_FORWARDED_PROTO']" in config
