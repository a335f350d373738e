# A stdout callback for tests.test_ansible: prints every task result and the
# recap as one JSON line (ansible-core ships no JSON callback of its own).

import json

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "jtresults"

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.results = []

    def _record(self, result, status):
        self.results.append({"task": result._task.get_name(),
                             "status": status,
                             "result": dict(result._result)})

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        recap = {host: stats.summarize(host) for host in sorted(stats.processed)}
        self._display.display(json.dumps({"tasks": self.results,
                                          "stats": recap}, default=str))
