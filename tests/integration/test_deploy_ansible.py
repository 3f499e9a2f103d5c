#!/usr/bin/env python3
"""The Ansible deployment (deploy/ansible): the role's gaggled.yaml template
and the playbook, checked against real gaggled processes.

Without Ansible, the template is rendered with Python's jinja2 the way the
template module renders it (trim_blocks, strict undefined) from the role's
defaults: it must emit only keys gaggled accepts (as listed by
`gaggled --help`), derive join seeds from the other hosts of the group, and a
rendered file with every optional setting must start a real gaggled that
joins the seed it names. With ansible-playbook, site.yml passes
--syntax-check and then runs for real against this machine (connection local,
every path redirected under a temp dir, no root, no systemd): a gaggled
started from the installed binary, configuration and certificate only answers
/healthz under the inventory host name, and a second run changes nothing.

Parts that need jinja2/PyYAML or ansible-playbook skip with the reason when
they are missing (apt-get install ansible-core brings all three)."""

import grp
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import wait_until  # noqa: E402

try:
    import jinja2
    import yaml
except ImportError as e:  # reported by the tests that need them
    jinja2 = yaml = None
    IMPORT_ERROR = str(e)

SOURCE = os.environ.get("GAGGLE_SOURCE") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")
ANSIBLE_DIR = os.path.join(SOURCE, "deploy", "ansible")
ROLE_DIR = os.path.join(ANSIBLE_DIR, "roles", "gaggle")
SITE = os.path.join(ANSIBLE_DIR, "site.yml")
PLAYBOOK_TIMEOUT = 240.0
SCALE_KEYS = {"run", "targetsPerAgent", "minAgents", "maxAgents", "cooldown", "elastic"}


def gaggled_file_keys():
    """The keys a config file may hold: gaggled's flags, less the
    command-line-only ones, plus the file-only scale section."""
    code, out, err = harness.gaggled_once("--help")
    if code != 0:
        raise AssertionError(f"gaggled --help failed ({code}): {err}")
    keys = set(re.findall(r"^\s+--([a-z][a-z-]*)", out, re.M))
    if not {"name", "bind", "join", "http"} <= keys:
        raise AssertionError(f"gaggled --help lists no options I know: {out[:300]!r}")
    return (keys - {"config", "help", "version"}) | {"scale"}


def render_config(overrides, inventory_hostname, groups, hostvars):
    """gaggled.yaml for one host: the role's defaults, overridden, resolved
    (values may name other variables) and rendered like Ansible's template
    module does it."""
    env = jinja2.Environment(trim_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    with open(os.path.join(ROLE_DIR, "defaults", "main.yml")) as f:
        variables = yaml.safe_load(f)
    variables.update(overrides)
    context = {"inventory_hostname": inventory_hostname, "groups": groups,
               "hostvars": hostvars, "playbook_dir": ANSIBLE_DIR, "role_path": ROLE_DIR}

    def resolve(value, ctx):
        if isinstance(value, str) and "{{" in value:
            return env.from_string(value).render(ctx)
        if isinstance(value, list):
            return [resolve(v, ctx) for v in value]
        if isinstance(value, dict):
            return {k: resolve(v, ctx) for k, v in value.items()}
        return value

    for _ in range(8):  # until no value names another
        ctx = {**context, **variables}
        resolved = {k: resolve(v, ctx) for k, v in variables.items()}
        if resolved == variables:
            break
        variables = resolved
    with open(os.path.join(ROLE_DIR, "templates", "gaggled.yaml.j2")) as f:
        template = env.from_string(f.read())
    return template.render({**context, **variables})


def start_with_config_only(cluster, name, config_path, http_port, bind_port, workdir):
    """Starts gaggled with --config and nothing else, tracked like the
    harness's agents (killed by pid at the end, logs shown on failure)."""
    os.makedirs(workdir, exist_ok=True)
    argv = [harness.GAGGLED, "--config", config_path]
    with open(os.path.join(workdir, "stdout.log"), "ab") as out, \
            open(os.path.join(workdir, "stderr.log"), "ab") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    harness._live_processes[proc.pid] = proc
    agent = harness.Agent(cluster, name, proc, argv, http_port, bind_port, workdir, None)
    cluster.agents.append(agent)

    def ready():
        if not agent.alive():
            raise AssertionError(f"{name} exited with {proc.returncode}:\n{agent.log()}")
        return agent.healthy()
    try:
        wait_until(ready, harness.START_TIMEOUT, f"{name} to answer /healthz")
    except AssertionError:
        if not agent.alive():
            raise AssertionError(f"{name} exited with {proc.returncode} while starting "
                                 f"with {config_path}:\n{agent.log()}") from None
        raise
    return agent


def members(agent, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return {m["name"]: m for m in agent.get_json("/v1/members", headers=headers)["members"]}


class RenderedConfigTest(harness.AgentTestCase):
    """The template, rendered without Ansible, against a real gaggled."""

    def setUp(self):
        if jinja2 is None:
            raise unittest.SkipTest(f"python3-jinja2 and python3-yaml are needed to render the "
                                    f"role's template ({IMPORT_ERROR})")
        super().setUp()

    def test_defaults_emit_only_keys_gaggled_accepts(self):
        groups = {"gaggle": ["web-01", "web-02", "web-03"]}
        hostvars = {"web-01": {"ansible_host": "10.0.0.11"},
                    "web-02": {},
                    "web-03": {"gaggle_advertise_host": "web-03.internal",
                               "gaggle_port": 7800}}
        text = render_config({}, "web-02", groups, hostvars)
        cfg = yaml.safe_load(text)
        self.assertLessEqual(set(cfg), gaggled_file_keys(), text)
        self.assertEqual(cfg["name"], "web-02")
        # The other hosts of the group, by ansible_host, advertise host and port.
        self.assertEqual(cfg["join"], ["tcp://10.0.0.11:7700", "tcp://web-03.internal:7800"])
        self.assertEqual(cfg["bind"], "tcp://0.0.0.0:7700")
        self.assertEqual(cfg["node-cert"], "/etc/gaggle/node.cert")
        self.assertEqual(cfg["node-key"], "/etc/gaggle/node.key")
        self.assertEqual(cfg["operators"], "/etc/gaggle/operators")
        self.assertEqual(cfg["data-dir"], "/var/lib/gaggle")
        # Optional settings left empty are left out: gaggled's defaults apply.
        for key in ("advertise", "http-token", "scale", "map-size", "reap"):
            self.assertNotIn(key, cfg)

        # Alone in its group: no seeds, a fleet of its own.
        alone = yaml.safe_load(render_config({}, "solo", {"gaggle": ["solo"]}, {"solo": {}}))
        self.assertNotIn("join", alone)
        # An explicit list wins over the group; the seed count is bounded.
        explicit = yaml.safe_load(render_config(
            {"gaggle_join": ["tcp://seed.example:7700"]}, "web-02", groups, hostvars))
        self.assertEqual(explicit["join"], ["tcp://seed.example:7700"])
        capped = yaml.safe_load(render_config({"gaggle_seed_max": 1}, "web-02", groups,
                                              hostvars))
        self.assertEqual(capped["join"], ["tcp://10.0.0.11:7700"])

    def test_every_setting_is_accepted_and_the_seed_is_joined(self):
        seed = self.cluster.start_agent("n1")
        identity = self.cluster.make_node("n2")
        etc = self.cluster.path("n2-etc")
        os.makedirs(os.path.join(etc, "operators"))
        shutil.copy(identity.cert, os.path.join(etc, "node.cert"))
        shutil.copy(identity.key, os.path.join(etc, "node.key"))
        for pub in os.listdir(self.cluster.operators_dir):
            shutil.copy(os.path.join(self.cluster.operators_dir, pub),
                        os.path.join(etc, "operators", pub))
        token = "deploy-test-token"
        with open(os.path.join(etc, "http.token"), "w") as f:  # what the role writes
            f.write(token + "\n")
        http_port, bind_port = harness.free_port(), harness.free_port()
        overrides = {
            "gaggle_config_dir": etc,
            "gaggle_data_dir": self.cluster.path("n2-data"),
            "gaggle_port": bind_port,
            "gaggle_bind": "tcp://127.0.0.1:{{ gaggle_port }}",
            "gaggle_advertise_host": "127.0.0.1",
            "gaggle_http": f"127.0.0.1:{http_port}",
            "gaggle_profile": "test",
            "gaggle_workers": 2,
            "gaggle_log_level": "debug",
            "gaggle_map_size": "64MiB",
            "gaggle_reap": "1h",
            "gaggle_http_token": token,
            "gaggle_scale": {"run": "/bin/true", "targetsPerAgent": 50, "minAgents": 1,
                             "maxAgents": 2, "cooldown": "10m", "elastic": False},
        }
        groups = {"gaggle": ["n1", "n2"]}
        hostvars = {"n1": {"ansible_host": "127.0.0.1", "gaggle_port": seed.bind_port},
                    "n2": {}}
        text = render_config(overrides, "n2", groups, hostvars)
        cfg = yaml.safe_load(text)
        self.assertLessEqual(set(cfg), gaggled_file_keys(), text)
        self.assertEqual(set(cfg["scale"]), SCALE_KEYS)
        self.assertEqual(cfg["join"], [f"tcp://127.0.0.1:{seed.bind_port}"])
        config_path = self.cluster.write("n2.yaml", text)

        agent = start_with_config_only(self.cluster, "n2", config_path, http_port, bind_port,
                                       self.cluster.path("agents", "n2"))
        status, _, _ = agent.get("/v1/members")
        self.assertEqual(status, 401, "http-token from the template is not enforced")
        wait_until(lambda: {"n1", "n2"} <= {n for n, m in members(agent, token).items()
                                            if m["state"] == "alive"},
                   harness.START_TIMEOUT, "n2 to join n1, its rendered seed")
        me = [m for m in members(agent, token).values() if m.get("self")]
        self.assertEqual([m["name"] for m in me], ["n2"])
        self.assertEqual(me[0]["address"], f"tcp://127.0.0.1:{bind_port}")


class AnsiblePlaybookTest(harness.AgentTestCase):
    """site.yml and the role, run by ansible-playbook against this machine."""

    HOST = "gg-node-1"

    def setUp(self):
        if shutil.which("ansible-playbook") is None:
            raise unittest.SkipTest("ansible-playbook is not installed "
                                    "(apt-get install ansible-core)")
        super().setUp()
        self.tmp = self.cluster.path("ansible-tmp")
        os.makedirs(self.tmp)
        config = os.path.join(self.tmp, "ansible.cfg")  # ignore any ansible.cfg around
        with open(config, "w") as f:
            f.write("[defaults]\n")
        self.env = {
            "ANSIBLE_CONFIG": config,
            "ANSIBLE_LOCAL_TEMP": self.tmp,
            "ANSIBLE_REMOTE_TEMP": self.tmp,
            "ANSIBLE_HOME": self.tmp,
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_STDOUT_CALLBACK": "default",
        }

    def playbook(self, *args):
        code, out, err = harness.run(["ansible-playbook", *args], timeout=PLAYBOOK_TIMEOUT,
                                     env=self.env)
        return code, out, err

    def recap(self, out):
        m = re.search(rf"^{re.escape(self.HOST)}\s+:\s+ok=(\d+)\s+changed=(\d+)\s+"
                      r"unreachable=(\d+)\s+failed=(\d+)", out, re.M)
        if not m:
            raise AssertionError(f"no PLAY RECAP line for {self.HOST}:\n{out}")
        return {k: int(v) for k, v in zip(("ok", "changed", "unreachable", "failed"),
                                          m.groups())}

    def test_syntax_check(self):
        code, out, err = self.playbook("-i", os.path.join(ANSIBLE_DIR, "inventory.example.ini"),
                                       "--syntax-check", SITE)
        self.assertEqual(code, 0, f"syntax check failed:\n{out}\n{err}")

    def test_deploys_a_working_agent_and_is_idempotent(self):
        c = self.cluster
        ctl = c.path("controller")
        code, _, err = harness.gaggle("keygen", "operator", "--out", ctl)
        self.assertEqual(code, 0, err)
        root = c.path("host")
        etc = os.path.join(root, "etc", "gaggle")
        bindir = os.path.join(root, "usr", "local", "bin")
        # A key trusted before but no longer listed: the role removes it.
        os.makedirs(os.path.join(etc, "operators"))
        c.write(os.path.join("host", "etc", "gaggle", "operators", "retired.pub"), "old\n")

        http_port, bind_port = harness.free_port(), harness.free_port()
        token = "playbook-token"
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        inventory = c.write("inventory.ini",
                            f"[gaggle]\n{self.HOST} ansible_connection=local "
                            f"ansible_python_interpreter={sys.executable}\n")
        extra = {
            "gaggle_become": False,
            "gaggle_bin_dir": harness.GAGGLE_BIN,
            "gaggle_operator_key": os.path.join(ctl, "operator.key"),
            "gaggle_operator_pubs": [os.path.join(ctl, "operator.pub")],
            "gaggle_pki_dir": os.path.join(ctl, "nodes"),
            "gaggle_prefix": os.path.join(root, "usr", "local"),
            "gaggle_config_dir": etc,
            "gaggle_data_dir": os.path.join(root, "var", "lib", "gaggle"),
            "gaggle_systemd_dir": os.path.join(root, "etc", "systemd", "system"),
            "gaggle_manage_user": False,
            "gaggle_manage_service": False,
            "gaggle_manage_packages": False,
            "gaggle_user": user,
            "gaggle_group": group,
            "gaggle_config_owner": user,
            "gaggle_port": bind_port,
            "gaggle_bind": f"tcp://127.0.0.1:{bind_port}",
            "gaggle_advertise_host": "127.0.0.1",
            "gaggle_http": f"127.0.0.1:{http_port}",
            "gaggle_profile": "test",
            "gaggle_http_token": token,
        }
        extra_file = c.write("extra.json", json.dumps(extra))
        args = ("-i", inventory, "-e", "@" + extra_file, SITE)

        code, out, err = self.playbook(*args)
        self.assertEqual(code, 0, f"first run failed:\n{out}\n{err}")
        first = self.recap(out)
        self.assertEqual(first["failed"], 0, out)
        self.assertGreater(first["changed"], 0, out)

        code, out, err = self.playbook(*args)
        self.assertEqual(code, 0, f"second run failed:\n{out}\n{err}")
        second = self.recap(out)
        self.assertEqual(second["changed"], 0, f"the second run changed something:\n{out}")

        # What landed on the host.
        for name in ("gaggled", "gaggle"):
            installed = os.path.join(bindir, name)
            self.assertTrue(os.access(installed, os.X_OK), installed)
            with open(installed, "rb") as a, open(os.path.join(harness.GAGGLE_BIN, name),
                                                   "rb") as b:
                self.assertTrue(a.read() == b.read(), f"{installed} differs from the build")
        self.assertEqual(os.stat(os.path.join(etc, "node.key")).st_mode & 0o777, 0o640)
        self.assertEqual(os.stat(os.path.join(etc, "gaggled.yaml")).st_mode & 0o777, 0o640)
        self.assertEqual(sorted(os.listdir(os.path.join(etc, "operators"))), ["operator.pub"])
        with open(os.path.join(ctl, "operator.key"), "rb") as f:
            operator_secret = f.read()
        for dirpath, _, files in os.walk(root):
            for name in files:
                with open(os.path.join(dirpath, name), "rb") as f:
                    self.assertNotIn(operator_secret, f.read(),
                                     f"the operator's secret key reached the host: {name}")
        self.assertTrue(os.path.exists(os.path.join(ctl, "nodes", self.HOST + ".cert")))
        with open(os.path.join(root, "etc", "systemd", "system", "gaggled.service")) as f:
            unit = f.read()
        self.assertIn(f"\nExecStart={bindir}/gaggled --config {etc}/gaggled.yaml\n", unit)
        self.assertIn(f"\nUser={user}\n", unit)

        # The installed files alone make a working agent named after the host.
        agent = start_with_config_only(c, self.HOST, os.path.join(etc, "gaggled.yaml"),
                                       http_port, bind_port, c.path("agents", self.HOST))
        status, _, _ = agent.get("/v1/members")
        self.assertEqual(status, 401, "the deployed http-token is not enforced")
        me = [m for m in members(agent, token).values() if m.get("self")]
        self.assertEqual([m["name"] for m in me], [self.HOST])
        self.assertEqual(me[0]["state"], "alive")


if __name__ == "__main__":
    harness.main()
