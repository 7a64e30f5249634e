"""Validate FHIR R4 resources with fhir.resources (structure, types, cardinality, codes of
required bindings to FHIR's own value sets). Reads one JSON resource per line from the file
named on the command line; validates every resource, and every resource inside a Bundle
entry or `contained`, as its own type. Prints one line per failure; exits 1 if any failed."""

import json
import sys

import fhir.resources
from fhir.resources import construct_fhir_element

assert fhir.resources.__fhir_version__ == "4.0.1", fhir.resources.__fhir_version__


def check(resource, where, failures):
    rtype = resource.get("resourceType")
    try:
        construct_fhir_element(rtype, resource)
    except Exception as e:  # noqa: BLE001 - report whatever the validator says
        failures.append(f"{where} ({rtype}): {e}".replace("\n", " | "))
    for i, entry in enumerate(resource.get("entry", []) if rtype == "Bundle" else []):
        if "resource" in entry:
            check(entry["resource"], f"{where}.entry[{i}]", failures)
    for i, inner in enumerate(resource.get("contained", [])):
        check(inner, f"{where}.contained[{i}]", failures)


def main():
    failures = []
    count = 0
    with open(sys.argv[1], encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                count += 1
                check(json.loads(line), f"line {n}", failures)
    for failure in failures:
        print(failure)
    print(f"validated {count} resources: {len(failures)} failed")
    sys.exit(1 if failures else 0)


main()
