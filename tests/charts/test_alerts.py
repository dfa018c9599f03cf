"""The platform chart's alerts (templates/prometheusrule.yaml) and Grafana dashboard
(dashboards/woostore.json), checked by Prometheus's own promtool: the rules load (their
templates included), each fires on the series that should fire it and not on those that
should not, the dashboard's queries parse, and every metric either reads is one the services
really export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import woostore_api.edge
import woostore_notifier.connections
import woostore_provisioner.recipe
import woostore_provisioner.runner
import woostore_reaper.gauges
import woostore_reaper.reaping
import woostore_shared.lifecycle
from tests.charts.chart import one, render_platform, run_helm

# The services' modules that define metrics the rules and the dashboard read.
EXPORTERS = (
    woostore_api.edge,
    woostore_notifier.connections,
    woostore_provisioner.recipe,
    woostore_provisioner.runner,
    woostore_reaper.gauges,
    woostore_reaper.reaping,
    woostore_shared.lifecycle,
)
REPO = Path(__file__).resolve().parents[2]
RUNBOOK = REPO / "docs" / "runbook.md"
# Each alert fires, or not, on each case's series; `firing` says when it is looked at.
CASES: dict[str, list[dict[str, Any]]] = {
    "WooStoreQueueStuck": [
        {  # the oldest store waits ever longer (a minute a minute), on the leading reaper
            "series": {
                'woostore_queue_oldest_age_seconds{queue="cold",pod="reaper-a"}': "0+60x40",
                'woostore_queue_oldest_age_seconds{queue="claimed",pod="reaper-a"}': "0x40",
                'woostore_queue_oldest_age_seconds{queue="cold",pod="reaper-b"}': "0x40",
            },
            "firing": {"10m": False, "25m": True},
            "labels": {"queue": "cold"},  # the alert says which wait
        },
        {  # the cold queue moves, but a store claimed from the warm pool is never personalised
            "series": {
                'woostore_queue_oldest_age_seconds{queue="cold"}': "0x40",
                'woostore_queue_oldest_age_seconds{queue="claimed"}': "0+60x40",
            },
            "firing": {"10m": False, "25m": True},
            "labels": {"queue": "claimed"},
        },
        {  # stores wait a few minutes each, and the queue moves
            "series": {"woostore_queue_oldest_age_seconds": " ".join(["0 120 240 60 180"] * 8)},
            "firing": {"30m": False},
        },
    ],
    "WooStoreFailureRateHigh": [
        {  # a third of the stores fail at a step, on the provisioner
            "series": {
                'woostore_stores_finished_total{outcome="ready"}': "0+2x90",
                'woostore_stores_failed_total{step="rollout",job="provisioner"}': "0+1x90",
                'woostore_stores_finished_total{outcome="deleted"}': "0+50x90",
            },
            "firing": {"5m": False, "20m": True},
        },
        {  # failed by the reaper's deadline: the provisioner counts nothing of them
            "series": {
                'woostore_stores_finished_total{outcome="ready"}': "0+1x90",
                'woostore_stores_failed_total{step="rollout",job="reaper"}': "0+1x90",
            },
            "firing": {"20m": True},
        },
        {  # every store fails: none was ever made
            "series": {'woostore_stores_failed_total{step="install_chart"}': "0+1x90"},
            "firing": {"20m": True},
        },
        {  # one in ten fails; ready stores lost later are no failure to make one
            "series": {
                'woostore_stores_finished_total{outcome="ready"}': "0+9x90",
                'woostore_stores_failed_total{step="rollout"}': "0+1x90",
                'woostore_stores_failed_total{step="lost"}': "0+20x90",
            },
            "firing": {"60m": False},
        },
    ],
    "WooStoreDeadLetter": [
        {
            "series": {"woostore_dead_letters_total": "0x30 1x30"},
            "firing": {"20m": False, "35m": True},
        },
    ],
    "WooStoreReaperWithoutLeader": [
        {  # the leader stops leading; the other never takes over
            "series": {
                'woostore_reaper_leader{pod="reaper-a"}': "1x10 0x20",
                'woostore_reaper_leader{pod="reaper-b"}': "0x30",
            },
            "firing": {"12m": False, "25m": True},
        },
        {  # no reaper reports at all
            "series": {"woostore_queue_depth": "0x30"},
            "firing": {"3m": False, "10m": True},
        },
        {  # the other takes over
            "series": {
                'woostore_reaper_leader{pod="reaper-a"}': "1x10 0x20",
                'woostore_reaper_leader{pod="reaper-b"}': "0x11 1x19",
            },
            "firing": {"25m": False},
        },
    ],
    "WooStoreReaperFailing": [
        {  # the leader cannot reach NATS: every pass fails, and it still leads; the standby
            "series": {  # counts none of its own
                'woostore_reaper_passes_total{result="done",pod="reaper-a"}': "0+12x10 120x30",
                'woostore_reaper_passes_total{result="failed",pod="reaper-a"}': "0x10 0+12x30",
                'woostore_reaper_passes_total{result="done",pod="reaper-b"}': "0x40",
                'woostore_reaper_passes_total{result="failed",pod="reaper-b"}': "0x40",
            },
            "firing": {"10m": False, "18m": False, "30m": True},
        },
        {  # a pass fails now and then (PostgreSQL restarted): no alert
            "series": {
                'woostore_reaper_passes_total{result="done"}': "0+11x40",
                'woostore_reaper_passes_total{result="failed"}': "0+1x40",
            },
            "firing": {"35m": False},
        },
    ],
    "WooStoreBackupsFailing": [
        {  # the storage refuses every backup
            "series": {
                'woostore_backups_ended_total{trigger="scheduled",result="failed"}': "0+1x60",
                'woostore_backups_ended_total{trigger="scheduled",result="complete"}': "5x60",
            },
            "firing": {"5m": True},
        },
        {  # one fails among many made
            "series": {
                'woostore_backups_ended_total{trigger="scheduled",result="failed"}': "0x30 1x30",
                'woostore_backups_ended_total{trigger="requested",result="complete"}': "0+1x60",
            },
            "firing": {"45m": False},
        },
    ],
    "WooStoreBackupDamaged": [
        {  # a restore found its backup damaged
            "series": {"woostore_backups_damaged_total": "0x10 1x50"},
            "firing": {"5m": False, "15m": True, "59m": True},
        },
        {  # found once, long ago: over
            "series": {"woostore_backups_damaged_total": "0x10 1x120"},
            "firing": {"100m": False},
        },
    ],
    "WooStoreBackupRepairFailing": [
        {  # a repair found the storage out of reach (a locked repository counts apart)
            "series": {
                'woostore_backup_repairs_total{result="failed"}': "0x10 1x50",
                'woostore_backup_repairs_total{result="removed"}': "0x60",
            },
            "firing": {"5m": False, "15m": True},
        },
        {  # repairs that removed damaged data, or found none: the damage alert's, not this
            "series": {
                'woostore_backup_repairs_total{result="failed"}': "0x60",
                'woostore_backup_repairs_total{result="removed"}': "0x10 1x50",
                'woostore_backup_repairs_total{result="whole"}': "0x20 1x40",
            },
            "firing": {"15m": False, "45m": False},
        },
    ],
}


RUNBOOK_URL = "https://git.example.com/woostore/blob/main/docs/runbook.md"


def rendered_rules(helm_env: dict[str, str], *extra: str) -> dict[str, Any]:
    docs = render_platform(helm_env, "--set", "metrics.prometheusRule.enabled=true", *extra)
    spec: dict[str, Any] = one(docs, "PrometheusRule", "woostore")["spec"]
    return spec


@pytest.fixture(scope="module")
def rules(helm_env: dict[str, str]) -> dict[str, Any]:
    return rendered_rules(helm_env, "--set", f"metrics.prometheusRule.runbookUrl={RUNBOOK_URL}")


def test_alerts_link_a_runbook_only_at_an_absolute_address(helm_env: dict[str, str]) -> None:
    """A relative link leads nowhere from an alert's notification: without an address the
    alerts carry none, and a relative one is refused."""
    bare = rendered_rules(helm_env)["groups"][0]["rules"]
    assert [r["annotations"].get("runbook_url") for r in bare] == [None] * len(bare)
    refused = run_helm(
        ["template", "woostore", str(REPO / "helm" / "platform"),
         "--set", "metrics.prometheusRule.enabled=true",
         "--set", "metrics.prometheusRule.runbookUrl=docs/runbook.md"],
        helm_env,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "runbookUrl" in refused.stderr


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: `make promtool` installs Debian's prometheus package")
    return subprocess.run(
        [found, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_rules_load_with_their_templates(rules: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    checked = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(CASES)} rules found" in checked.stdout  # each alert has its cases


def test_each_alert_fires_when_it_should_and_only_then(
    rules: dict[str, Any], tmp_path: Path
) -> None:
    names = [rule["alert"] for group in rules["groups"] for rule in group["rules"]]
    assert sorted(names) == sorted(CASES)
    # promtool compares annotations word for word; the test leaves them out (they load, above).
    bare = {
        "groups": [
            {**group, "rules": [{k: v for k, v in r.items() if k != "annotations"}
                                for r in group["rules"]]}
            for group in rules["groups"]
        ]
    }  # fmt: skip
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(bare))
    tests = []
    for alert, cases in CASES.items():
        severity = next(
            r["labels"]["severity"] for g in rules["groups"] for r in g["rules"]
            if r["alert"] == alert
        )  # fmt: skip
        for case in cases:
            tests.append(
                {
                    "interval": "1m",
                    "input_series": [
                        {"series": series, "values": values}
                        for series, values in case["series"].items()
                    ],
                    "alert_rule_test": [
                        {
                            "eval_time": at,
                            "alertname": alert,
                            "exp_alerts": [
                                {"exp_labels": {"severity": severity, **case.get("labels", {})}}
                            ]
                            if firing
                            else [],
                        }
                        for at, firing in case["firing"].items()
                    ],
                }
            )
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests})
    )
    tested = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def exported_metrics() -> set[str]:
    """The names of the metrics the services' modules register (imported above)."""
    assert EXPORTERS
    families = list(REGISTRY.collect())  # a labelled metric has no samples until it is used
    exported = {f.name + ("_total" if f.type == "counter" else "") for f in families}
    exported |= {sample.name for family in families for sample in family.samples}
    return exported


def metrics_read(expr: str) -> set[str]:
    """The WooStore metrics a PromQL expression reads (a histogram's by its family)."""
    return {
        re.sub(r"_(bucket|count|sum)$", "", name) for name in re.findall(r"woostore_[a-z_]+", expr)
    }


def test_every_metric_the_rules_read_is_exported_and_every_alert_has_a_runbook(
    rules: dict[str, Any],
) -> None:
    exported = exported_metrics()
    runbook = RUNBOOK.read_text()
    for group in rules["groups"]:
        for rule in group["rules"]:
            read = metrics_read(rule["expr"])
            assert read, rule["alert"]
            assert read <= exported, f"{rule['alert']} reads {read - exported}"
            address, anchor = rule["annotations"]["runbook_url"].rsplit("#", 1)
            assert address == RUNBOOK_URL
            assert f"## {rule['alert']}" in runbook, anchor
            assert anchor == rule["alert"].lower()


def test_the_dashboard_graphs_valid_queries_of_exported_metrics(
    helm_env: dict[str, str], tmp_path: Path
) -> None:
    docs = render_platform(helm_env, "--set", "metrics.grafanaDashboard.enabled=true")
    config_map = one(docs, "ConfigMap", "woostore-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["woostore.json"])
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(exprs) >= 9
    exported = exported_metrics()
    for expr in exprs:
        assert metrics_read(expr) <= exported, expr
    # Each metric architecture.md's table lists, as it says.
    listed = (REPO / "docs" / "architecture.md").read_text().split("| Metric | Type | From |")[1]
    table = listed.split("\n\n")[0]
    assert set(metrics_read(table)) <= set().union(*map(metrics_read, exprs))
    # promtool parses each query as a recording rule's expression.
    recording = [{"record": f"woostore:dashboard:{n}", "expr": e} for n, e in enumerate(exprs)]
    (tmp_path / "dashboard.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recording}]})
    )
    checked = promtool("check", "rules", "dashboard.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "woostore-dashboard" not in {
        d["metadata"]["name"] for d in render_platform(helm_env) if d["kind"] == "ConfigMap"
    }
