#!/usr/bin/env python3
"""Merge Helm values files the way `helm install -f` does, and print the result as JSON.

usage: merge_values.py CHART_VALUES [OVERRIDE ...] > merged.json

Helm validates values.schema.json against the *merged* values (chart defaults coalesced with the
user's files), so the schema checks in deploy/check.sh validate this output. Rules (Helm's
coalesceValues): maps merge recursively, anything else replaces, a null in an override deletes
the key.
"""
import json
import sys

import yaml


def coalesce(base, override):
    out = dict(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = coalesce(out[key], value)
        else:
            out[key] = value
    return out


def main(paths):
    merged = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f) or {}
        if not isinstance(doc, dict):
            sys.exit(f"{path}: values must be a YAML mapping")
        merged = coalesce(merged, doc)
    json.dump(merged, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
