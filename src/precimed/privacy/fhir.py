"""De-identify a FHIR R4 Bundle (JSON): names, contact points, addresses, identifiers, dates, references.

Per element, in every resource (contained resources included):
  narrative ``text`` (the XHTML div)        removed (it repeats names and dates)
  ``name`` of Patient/Practitioner/RelatedPerson/Person, ``telecom``, ``photo``, ``contact``,
  ``presentedForm``, attachment ``data``/``url``/``title``                       removed
  ``address``                                reduced to state, country and ZIP-3 (restricted prefixes -> 000)
  ``identifier``                             value -> keyed pseudonym, system -> urn:precimed:pseudonym
  resource ``id``, ``fullUrl``, references    keyed UUIDs, consistent across bundles for one key; a server
                                             base URL becomes https://deidentified.invalid/fhir
  Reference ``display``                      removed (it is usually a name)
  extensions                                 removed, except US Core race, ethnicity, birth sex
  every date / dateTime / instant / Period   shifted by the *patient's* keyed offset (or year only)
  ``birthDate``                              shifted (or year); people aged 90 or over at their latest
                                             recorded date are top-coded to 90
  free text (note.text, comment, valueString, description, conclusion, patientInstruction)
                                             PHI redacted (precimed.privacy.notes), dates shifted
  ``request.url`` queries, ``ifNoneExist``, ``response``, bundle ``link``          removed

Which patient a resource belongs to: a Patient is its own; any other resource belongs to the patient
its references point to (``subject``/``patient`` first); with a single Patient in the bundle, every
resource belongs to it. The patient key is the Patient's first identifier of type MR (else its first
identifier, else its id): use the same value as the tables' ``patient_id`` and the dates of one
patient shift by the same number of days in tables and bundles, and the identifier's pseudonym
equals the table's. The output is validated with fhir.resources (its R4B models, the R4-compatible
release it ships); an invalid result is an error and nothing is written.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

from precimed.atomic import atomic_write_bytes
from precimed.errors import ConfigError, DataError
from precimed.jsonio import dumps
from precimed.privacy import dates as dt
from precimed.privacy.notes import redact
from precimed.privacy.policy import DeidReport, Policy, load_policy
from precimed.privacy.pseudonym import KeyMaterial, Pseudonymizer, key_file_warnings, load_key
from precimed.privacy.safe_harbor import zip_prefix
from precimed.privacy.tables import check_paths

log = logging.getLogger("precimed.privacy")

PSEUDONYM_SYSTEM = "urn:precimed:pseudonym"
DEID_BASE = "https://deidentified.invalid/fhir"
PERSON_TYPES = frozenset({"Patient", "Practitioner", "RelatedPerson", "Person"})
REMOVED_KEYS = frozenset({"telecom", "photo", "contact", "presentedForm"})
KEPT_EXTENSIONS = frozenset({
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
})
FREE_TEXT_KEYS = frozenset({"comment", "valueString", "description", "conclusion", "patientInstruction"})
DATE_KEYS = frozenset({
    "birthDate", "date", "start", "end", "issued", "lastUpdated", "recorded", "recordedDate", "authoredOn",
    "created", "time", "timestamp", "occurrenceDateTime", "dateAsserted", "dateWritten", "lastOccurrence",
    "onset", "whenHandedOver", "whenPrepared", "validityPeriod", "sent", "received", "instant", "event",
    "dateTime", "asserted", "availabilityStartTime", "expirationDate", "lastReviewed", "approvalDate",
})
INSTANT_KEYS = frozenset({"issued", "lastUpdated", "recorded", "timestamp", "valueInstant", "effectiveInstant",
                          "instant"})
INSTANT_TYPES_START_END = frozenset({"Appointment", "Slot", "AppointmentResponse"})
_FULL_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$")
_ABSOLUTE_REF = re.compile(r"^https?://.+/(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/.*)?$")
_RELATIVE_REF = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/.*)?$")
_URN_UUID = re.compile(r"^urn:uuid:(?P<uuid>[0-9a-fA-F-]{36})$")


def _is_date_key(key: str) -> bool:
    return key in DATE_KEYS or key.endswith(("DateTime", "Date", "Instant", "Period")) or key == "period"


class _Context:
    def __init__(self, key: KeyMaterial, policy: Policy) -> None:
        opts = policy.options
        self.pseudo = Pseudonymizer(key, opts.pseudonym_length, opts.pseudonym_prefix)
        self.shifter = dt.DateShifter(key, opts.dates.max_shift_days)
        self.mode = opts.dates.mode
        self.text_dates = opts.text.dates
        self.counts: Counter = Counter()
        self.phi: Counter = Counter()

    # ----- ids and references
    def new_id(self, rtype: str, rid: str) -> str:
        return self.pseudo.uuid(f"{rtype}/{rid}", "precimed/fhir-id/v1")

    def new_urn(self, value: str) -> str:
        return "urn:uuid:" + self.pseudo.uuid(value.lower(), "precimed/fhir-urn/v1")

    def reference(self, ref: str) -> str:
        if ref.startswith("#"):
            return ref
        self.counts["references_rewritten"] += 1
        m = _URN_UUID.match(ref)
        if m:
            return self.new_urn(m["uuid"])
        m = _RELATIVE_REF.match(ref)
        if m:
            return f"{m['type']}/{self.new_id(m['type'], m['id'])}"
        m = _ABSOLUTE_REF.match(ref)
        if m:
            return f"{DEID_BASE}/{m['type']}/{self.new_id(m['type'], m['id'])}"
        return "urn:uuid:" + self.pseudo.uuid(ref, "precimed/fhir-other/v1")

    # ----- dates
    def date_value(self, value: str, shift: int, *, instant: bool) -> str | None:
        if self.mode == "year":
            year = dt.fhir_year(value)
            if year is None:
                return None
            self.counts["dates_to_year"] += 1
            return f"{year}-01-01T00:00:00Z" if instant else year
        shifted = dt.shift_fhir_date(value, shift)
        if shifted is not None:
            self.counts["dates_shifted"] += 1
        return shifted


def _patient_key(resource: dict) -> str | None:
    identifiers = resource.get("identifier") or []
    for ident in identifiers:
        codes = [c.get("code") for c in (ident.get("type") or {}).get("coding", []) if isinstance(c, dict)]
        if "MR" in codes and ident.get("value"):
            return str(ident["value"])
    for ident in identifiers:
        if isinstance(ident, dict) and ident.get("value"):
            return str(ident["value"])
    if resource.get("id"):
        return f"Patient/{resource['id']}"
    return None


def _references(node: Any, out: list[tuple[str, str]], field: str = "") -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference" and isinstance(v, str):
                out.append((field, v))
            elif k not in ("contained",):
                _references(v, out, k if isinstance(v, dict | list) else field)
    elif isinstance(node, list):
        for item in node:
            _references(item, out, field)


def _latest_date(node: Any, key: str = "") -> date | None:
    latest: date | None = None
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "birthDate":
                continue
            d = _latest_date(v, k)
            latest = d if latest is None or (d is not None and d > latest) else latest
    elif isinstance(node, list):
        for item in node:
            d = _latest_date(item, key)
            latest = d if latest is None or (d is not None and d > latest) else latest
    elif isinstance(node, str) and key and (_is_date_key(key) or _FULL_DATE.match(node)):
        latest = dt.parse_fhir_date(node)
    return latest


def deidentify_bundle(bundle: dict, policy: Policy, key: KeyMaterial, *, source: str = "bundle",
                      output: str = "", validate: bool = True) -> tuple[dict, DeidReport]:
    """De-identify a FHIR R4 Bundle given as parsed JSON; return (new bundle, report)."""
    if not isinstance(key, KeyMaterial):
        raise ConfigError("deidentify_bundle needs a KeyMaterial (load_key(...)); no key, no output")
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise DataError(f"{source}: not a FHIR Bundle (resourceType must be 'Bundle')")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise DataError(f"{source}: Bundle.entry must be a list")
    ctx = _Context(key, policy)
    report = DeidReport("fhir", source, output, key.source, key.fingerprint,
                        settings={"dates": policy.options.dates.model_dump(), "fhir_release_validated": "R4B"})

    # 1. patients and the references that point to them
    patient_of_ref: dict[str, str] = {}
    patients: list[str] = []
    for entry in entries:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict) and res.get("resourceType") == "Patient":
            pkey = _patient_key(res) or entry.get("fullUrl") or f"entry-{len(patients)}"
            patients.append(pkey)
            if entry.get("fullUrl"):
                patient_of_ref[entry["fullUrl"]] = pkey
                m = _ABSOLUTE_REF.match(entry["fullUrl"])
                if m:
                    patient_of_ref[f"{m['type']}/{m['id']}"] = pkey
            if res.get("id"):
                patient_of_ref[f"Patient/{res['id']}"] = pkey

    def owner(res: dict) -> str | None:
        if res.get("resourceType") == "Patient":
            return _patient_key(res)
        refs: list[tuple[str, str]] = []
        _references(res, refs)
        refs.sort(key=lambda fr: 0 if fr[0] in ("subject", "patient", "beneficiary") else 1)
        for _, ref in refs:
            if ref in patient_of_ref:
                return patient_of_ref[ref]
            m = _ABSOLUTE_REF.match(ref)
            if m and f"{m['type']}/{m['id']}" in patient_of_ref:
                return patient_of_ref[f"{m['type']}/{m['id']}"]
        return patients[0] if len(set(patients)) == 1 else None

    owners = []
    latest: dict[str | None, date] = {}
    for entry in entries:
        res = entry.get("resource") if isinstance(entry, dict) else None
        who = owner(res) if isinstance(res, dict) else None
        owners.append(who)
        if isinstance(res, dict):
            d = _latest_date(res)
            if d is not None and (who not in latest or d > latest[who]):
                latest[who] = d

    # 2. transform
    out_entries = []
    unlinked = 0
    for entry, who in zip(entries, owners, strict=True):
        if not isinstance(entry, dict):
            raise DataError(f"{source}: a Bundle entry is not an object")
        if who is None:
            unlinked += 1
        shift = ctx.shifter.shift_days(who if who is not None else dt.UNLINKED) or 0
        new_entry = {}
        for k, v in entry.items():
            if k == "fullUrl":
                new_entry[k] = ctx.reference(v)
            elif k == "resource" and isinstance(v, dict):
                new_entry[k] = _resource(v, ctx, shift, latest.get(who))
            elif k == "request" and isinstance(v, dict):
                new_entry[k] = _request(v, ctx)
            elif k == "response":
                ctx.counts["responses_removed"] += 1
            else:
                new_entry[k] = copy.deepcopy(v)
        out_entries.append(new_entry)

    result: dict[str, Any] = {}
    single = ctx.shifter.shift_days(patients[0] if len(set(patients)) == 1 else dt.UNLINKED) or 0
    for k, v in bundle.items():
        if k == "entry":
            result[k] = out_entries
        elif k == "id" and isinstance(v, str):
            result[k] = ctx.new_id("Bundle", v)
        elif k == "identifier":
            result[k] = _identifier(v, ctx)
        elif k == "timestamp" and isinstance(v, str):
            new = ctx.date_value(v, single, instant=True)
            if new is not None:
                result[k] = new
        elif k == "link":
            ctx.counts["links_removed"] += 1
        elif k == "meta" and isinstance(v, dict):
            result[k] = _walk(v, ctx, single, "Bundle", None)
        elif k == "signature":
            ctx.counts["signatures_removed"] += 1
        else:
            result[k] = copy.deepcopy(v)

    if validate:
        validate_bundle(result, source=source)
    report.counts = {"entries": len(entries), "patients": len(set(patients)), "unlinked_resources": unlinked,
                     **dict(sorted(ctx.counts.items()))}
    report.phi_in_text = dict(sorted(ctx.phi.items()))
    if unlinked and len(set(patients)) > 1:
        report.warnings.append(f"{unlinked} resource(s) reference no patient; their dates use a shared shift")
    log.info("de-identified FHIR bundle %s: %d entries, %d patients", source, len(entries), len(set(patients)))
    return result, report


def _request(request: dict, ctx: _Context) -> dict:
    out = {}
    for k, v in request.items():
        if k == "url" and isinstance(v, str):
            base = v.split("?", 1)[0]
            if base != v:
                ctx.counts["request_queries_removed"] += 1
            m = _RELATIVE_REF.match(base)
            out[k] = f"{m['type']}/{ctx.new_id(m['type'], m['id'])}" if m else base
        elif k in ("ifNoneExist", "ifMatch", "ifNoneMatch", "ifModifiedSince"):
            ctx.counts["request_conditions_removed"] += 1
        else:
            out[k] = v
    return out


def _identifier(value: Any, ctx: _Context) -> Any:
    def one(ident: Any) -> Any:
        if not isinstance(ident, dict):
            return ident
        ctx.counts["identifiers_pseudonymized"] += 1
        out: dict[str, Any] = {"system": PSEUDONYM_SYSTEM}
        if ident.get("value") is not None:
            out["value"] = ctx.pseudo(ident["value"])
        else:
            out["value"] = ctx.pseudo(json.dumps(ident, sort_keys=True))
        return out

    if isinstance(value, list):
        return [one(i) for i in value]
    return one(value)


def _address(value: Any, ctx: _Context) -> Any:
    def one(addr: Any) -> dict | None:
        if not isinstance(addr, dict):
            return None
        out = {k: addr[k] for k in ("use", "type", "state", "country") if k in addr}
        if addr.get("postalCode"):
            z = zip_prefix(addr["postalCode"], 3)
            if z is not None:
                out["postalCode"] = z
        ctx.counts["addresses_generalized"] += 1
        return out or None

    if isinstance(value, list):
        kept = [a for a in (one(a) for a in value) if a]
        return kept or None
    return one(value)


def _resource(res: dict, ctx: _Context, shift: int, latest: date | None) -> dict:
    rtype = res.get("resourceType", "")
    ctx.counts["resources"] += 1
    out = _walk(res, ctx, shift, rtype, latest)
    return out


def _walk(node: Any, ctx: _Context, shift: int, rtype: str, latest: date | None, key: str = "") -> Any:
    if isinstance(node, list):
        items = [_walk(item, ctx, shift, rtype, latest, key) for item in node]
        return [i for i in items if i is not None]
    if isinstance(node, str):
        return _string(node, ctx, shift, rtype, key)
    if not isinstance(node, dict):
        return copy.deepcopy(node)
    is_resource = isinstance(node.get("resourceType"), str)
    here = node["resourceType"] if is_resource else rtype
    is_reference = "reference" in node or ("identifier" in node and "display" in node)
    is_attachment = "contentType" in node or ("data" in node and "url" not in node and "size" in node)
    out: dict[str, Any] = {}
    for k, v in node.items():
        if is_resource and k == "text" and isinstance(v, dict):
            ctx.counts["narratives_removed"] += 1
        elif is_resource and k == "id" and isinstance(v, str):
            out[k] = ctx.new_id(here, v)
        elif k == "name" and here in PERSON_TYPES and is_resource:
            ctx.counts["names_removed"] += 1
        elif k in REMOVED_KEYS:
            ctx.counts[f"{k}_removed"] += 1
        elif k in ("extension", "modifierExtension"):
            items = v if isinstance(v, list) else [v]
            kept = [e for e in items if isinstance(e, dict) and e.get("url") in KEPT_EXTENSIONS]
            if len(kept) != len(items):
                ctx.counts["extensions_removed"] += len(items) - len(kept)
            if kept:
                out[k] = _walk(kept, ctx, shift, here, latest, k)
        elif k == "identifier":
            out[k] = _identifier(v, ctx)
        elif k == "address":
            new = _address(v, ctx)
            if new:
                out[k] = new
        elif k == "reference" and isinstance(v, str):
            out[k] = ctx.reference(v)
        elif k == "display" and is_reference:
            ctx.counts["reference_displays_removed"] += 1
        elif is_attachment and k in ("data", "url", "title", "hash"):
            ctx.counts["attachment_fields_removed"] += 1
        elif k == "authorString":
            ctx.counts["authors_removed"] += 1
        elif k == "note" and isinstance(v, list):
            out[k] = [_annotation(n, ctx, shift, here, latest) for n in v]
        elif k == "birthDate" and isinstance(v, str):
            new = _birth_date(v, ctx, shift, latest)
            if new is not None:
                out[k] = new
        elif k == "div" and isinstance(v, str):
            ctx.counts["narratives_removed"] += 1
        else:
            new = _walk(v, ctx, shift, here, latest, k)
            if new is not None and new != [] and new != {}:
                out[k] = new
            elif isinstance(v, str):
                ctx.counts["dates_removed"] += 1
    return out


def _string(value: str, ctx: _Context, shift: int, rtype: str, key: str) -> str | None:
    instant = key in INSTANT_KEYS or (key in ("start", "end") and rtype in INSTANT_TYPES_START_END)
    if _is_date_key(key) and dt.FHIR_DATE.match(value):
        return ctx.date_value(value, shift, instant=instant)
    if key in FREE_TEXT_KEYS:
        return _free_text(value, ctx, shift)
    if _FULL_DATE.match(value):  # a full date in an element whose name does not say so
        return ctx.date_value(value, shift, instant=instant or "T" in value and ctx.mode == "year")
    return value


def _free_text(value: str, ctx: _Context, shift: int) -> str:
    days = shift if (ctx.mode == "shift" and ctx.text_dates == "shift") else None
    new, found = redact(value, shift_days=days)
    if found:
        ctx.phi.update(found)
        ctx.counts["free_text_redacted"] += 1
    return new


def _annotation(note: Any, ctx: _Context, shift: int, rtype: str, latest: date | None) -> Any:
    """An Annotation: its text redacted, its author string removed, its time shifted."""
    if not isinstance(note, dict):
        return note
    out = {}
    for k, v in note.items():
        if k == "text" and isinstance(v, str):
            out[k] = _free_text(v, ctx, shift)
        elif k == "authorString":
            ctx.counts["authors_removed"] += 1
        else:
            new = _walk(v, ctx, shift, rtype, latest, k)
            if new is not None:
                out[k] = new
    return out


def _birth_date(value: str, ctx: _Context, shift: int, latest: date | None) -> str | None:
    born = dt.parse_fhir_date(value)
    if born is not None and latest is not None and dt.age_in_years(born, latest) > 89:
        ctx.counts["birth_dates_top_coded_90_plus"] += 1
        coded = dt.top_coded_birth(latest).isoformat()
        value = coded[:len(value)] if len(value) in (4, 7) else coded  # a year (or year-month) stays one
    return ctx.date_value(value, shift, instant=False)


def validate_bundle(bundle: dict, *, source: str = "bundle") -> None:
    """Validate with fhir.resources (R4B models); errors name element paths, never values."""
    from fhir.resources.R4B.bundle import Bundle
    from pydantic import ValidationError

    try:
        Bundle.model_validate(bundle)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))} ({e['type']})" for e in exc.errors()[:5])
        raise DataError(f"{source}: the de-identified bundle is not valid FHIR R4: {where}. "
                        "Check that the input bundle validates") from None


def deidentify_bundle_file(input: str | Path, output: str | Path, policy_path: str | Path | None = None,
                           key_file: str | Path | None = None, key_env: str | None = None, *,
                           overwrite: bool = False) -> DeidReport:
    """De-identify a FHIR Bundle JSON file into `output`; atomic, never over the input."""
    input_path, output_path = Path(input), Path(output)
    check_paths(input_path, output_path, overwrite=overwrite)
    key = load_key(key_file, key_env)
    policy = load_policy(policy_path) if policy_path is not None else Policy()
    if not input_path.is_file():
        raise DataError(f"{input_path}: file not found")
    try:
        bundle = json.loads(input_path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise DataError(f"{input_path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{input_path}: not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    result, report = deidentify_bundle(bundle, policy, key, source=input_path.name, output=output_path.name)
    report.warnings += key_file_warnings(key_file, [input_path, output_path])
    atomic_write_bytes(output_path, dumps(result, indent=1).encode("utf-8"))
    return report
