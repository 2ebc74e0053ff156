# Plugins: loading by name with their options checked, content_filter rules, the hook host.
from __future__ import annotations

import pytest

from gateway.config import parse_config
from gateway.errors import ConfigError
from plugins import MessageView, PluginHost, Reject, Rewrite
from plugins.content_filter import ContentFilter
from routing.router import Decision


def view(text="hello", source="AsiaCell", destination="964111222333"):
    return MessageView("carrier", "TATA", source, destination, text, 0)


def load(plugins):
    config = parse_config({"plugins": plugins}, "conf/test.yaml")
    return PluginHost.load(config.plugins, config.source)


def test_unknown_plugin_is_a_config_error_naming_the_entry():
    with pytest.raises(ConfigError) as caught:
        load([{"name": "nope"}])
    assert "conf/test.yaml: plugins[0].name: no plugin 'nope'" in str(caught.value)


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ({}, "plugins[0].options.url: must be an http:// or https:// URL"),
        ({"url": "ftp://x"}, "plugins[0].options.url"),
        ({"url": "http://x", "events": ["sent"]}, "plugins[0].options.events"),
        ({"url": "http://x", "timeout": 0}, "plugins[0].options.timeout"),
        ({"url": "http://x", "colour": 1}, "plugins[0].options.colour: unknown option"),
    ],
)
def test_webhook_options_are_checked(options, where):
    with pytest.raises(ConfigError) as caught:
        load([{"name": "webhook", "options": options}])
    assert where in str(caught.value)


def test_disabled_plugins_are_not_loaded():
    assert len(load([{"name": "nope", "enabled": False}])) == 0


def test_content_filter_first_matching_rule_decides():
    f = ContentFilter(
        {
            "rules": [
                {"field": "recipient", "match": "^964111222333$", "action": "allow"},
                {"field": "text", "match": "(?i)casino", "action": "reject", "reason": "gambling"},
                {"field": "sender", "match": "^Promo", "action": "reject"},
            ]
        }
    )
    assert f.on_accept(view("Casino night!", destination="964111222333")) is None  # allowed first
    assert f.on_accept(view("Casino night!", destination="9647")) == Reject("gambling")
    refused = f.on_accept(view("hi", source="PromoCo", destination="9647"))
    assert isinstance(refused, Reject) and "^Promo" in refused.reason
    assert f.on_accept(view(None, destination="9647")) is None  # binary: text rules skip it


def test_content_filter_default_reject_and_bad_rules():
    f = ContentFilter({"default": "reject", "rules": []})
    assert isinstance(f.on_accept(view()), Reject)
    with pytest.raises(ConfigError) as caught:
        load(
            [
                {
                    "name": "content_filter",
                    "options": {"rules": [{"field": "text", "match": "(", "action": "reject"}]},
                }
            ]
        )
    assert "plugins[0].options.rules[0].match: not a regular expression" in str(caught.value)


class Rewriter:
    def on_accept(self, message):
        return Rewrite(text=message.text.upper())


class Broken:
    def on_accept(self, message):
        raise RuntimeError("bug")

    def on_route(self, message, decision):
        raise RuntimeError("bug")


class Refuser:
    def on_accept(self, message):
        return Reject("not today")


def test_host_applies_rewrites_in_order_and_survives_a_broken_plugin():
    # on_error: accept (open): the broken plugin is skipped; the default (reject) is in
    # tests/plugins/test_plugin_failure.py
    host = PluginHost([("broken", Broken()), ("up", Rewriter())], ["accept", "reject"])
    changed, refusal = host.accept(view("abc"))
    assert (changed.text, refusal) == ("ABC", None)
    assert host.errors["broken.on_accept"] == 1
    decision = Decision("reject", None, (), "no route")
    assert host.route(view(), decision) is decision
    changed, refusal = PluginHost([("no", Refuser())]).accept(view())
    assert refusal == "refused by plugin no: not today"
