"""The report's counts: network calls under their new name, and reports written before the rename."""

from semanticdraw_cli.report import network_calls


def test_network_calls_reads_new_and_old_reports():
    assert network_calls({"network_calls": 7}) == 7
    assert network_calls({"unet_calls": 5}) == 5  # a report written before issue 21
