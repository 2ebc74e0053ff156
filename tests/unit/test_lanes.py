# Tests of gateway/lanes.py: verification traffic in the priority lane, campaigns in bulk.
from __future__ import annotations

from gateway.config import DeliveryConfig
from gateway.lanes import LaneRules

D = DeliveryConfig()
RULES = LaneRules.build(["Viber", "Google*"], D.verification_keywords, D.verification_max_length)


def lane(source="AsiaCell", text="hello", priority=0):
    return RULES.lane(source=source, text=text, priority=priority)


def test_priority_flag_wins():
    assert lane(priority=1, text="Big sale today") == "priority"


def test_verification_senders_by_name_without_case_and_wildcard():
    assert lane(source="viber", text="x" * 500) == "priority"
    assert lane(source="GoogleVerify") == "priority"
    assert lane(source="NotViber") == "bulk"


def test_code_with_keyword_in_a_short_text():
    assert lane(text="Your code is 482913") == "priority"
    assert lane(text="رمز التحقق 4821") == "priority"
    assert lane(text="OTP: 1234. Do not share.") == "priority"


def test_campaigns_stay_bulk():
    assert lane(text="Sale! 50% off until 2027") == "bulk"  # a year, no keyword
    assert lane(text="Use code SUMMER for a discount") == "bulk"  # keyword, no digits
    assert lane(text="Your code 1234 " + "x" * 200) == "bulk"  # too long for the rule
    assert lane(text="code 123456789") == "bulk"  # nine digits is no code
    assert lane(text=None) == "bulk"
