"""Reads Prometheus text exposition on stdin and prints its metric families
as JSON, parsed by the reference Python client's parser (Debian's
python3-prometheus-client): test/support/prometheus-text.ts runs it, so
that the metrics tests read a scrape as a Prometheus server would, with a
parser that is not ours.

Each family: {"name", "help", "type", "samples": [{"name", "labels", "value"}]},
named as its TYPE line names it (the parser drops a counter's _total)."""
import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def number(value):
    # JSON has no infinities or NaN: those travel as the exposition's words.
    if math.isinf(value):
        return '+Inf' if value > 0 else '-Inf'
    if math.isnan(value):
        return 'NaN'
    return value


families = []
for family in text_string_to_metric_families(sys.stdin.read()):
    name = family.name + '_total' if family.type == 'counter' else family.name
    families.append({
        'name': name,
        'help': family.documentation,
        'type': family.type,
        'samples': [{'name': s.name, 'labels': s.labels, 'value': number(s.value)} for s in family.samples],
    })
json.dump(families, sys.stdout)
