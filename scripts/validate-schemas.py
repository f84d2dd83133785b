#!/usr/bin/env python3
"""Validates JSON documents against Sluice's schemas.

Usage: validate-schemas.py SCHEMA_DIR < input, where input is one JSON object per line:
{"schema": "event", "document": {...}}. Prints one line per invalid document and exits 1
if any; exits 0 and prints the count otherwise. Cross-file $refs are resolved locally."""
import json
import pathlib
import sys

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

schema_dir = pathlib.Path(sys.argv[1])
resources = {}
for path in schema_dir.glob("*.schema.json"):
    contents = json.loads(path.read_text())
    resource = Resource.from_contents(contents)
    resources[contents["$id"]] = resource
    resources[path.name] = resource
registry = Registry().with_resources(resources.items())
validators = {}
for path in schema_dir.glob("*.schema.json"):
    contents = json.loads(path.read_text())
    Draft202012Validator.check_schema(contents)
    validators[path.name.removesuffix(".schema.json")] = Draft202012Validator(
        contents, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)

failures = 0
count = 0
for line in sys.stdin:
    if not line.strip():
        continue
    item = json.loads(line)
    count += 1
    validator = validators[item["schema"]]
    for error in validator.iter_errors(item["document"]):
        failures += 1
        where = "/".join(str(p) for p in error.absolute_path)
        print(f"{item['schema']}: {where or '(root)'}: {error.message[:300]}")
print(f"{count} documents checked, {failures} errors", file=sys.stderr)
sys.exit(1 if failures else 0)
