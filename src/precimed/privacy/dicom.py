"""DICOM header de-identification per PS3.15 Annex E, Basic Application Level Confidentiality Profile.

The action table (``dicom_basic_profile.yaml``: tag, keyword, action code, with its source) drives
the main attributes: D dummy, Z empty, X remove, K keep, C clean, U consistent new UID. A compound
code applies its first letter (the most protective), except X/Z/U* sequences, which are kept and
their UIDs remapped. Beyond the table, precimed also:

- removes every private tag and the curve (50xx) and overlay data/comment (60xx,3000/4000) elements;
- remaps every other UID value outside the DICOM standard root ``1.2.840.10008`` (class and transfer
  syntax UIDs are kept), so references between instances stay consistent;
- empties every other person name (PN) and removes (or shifts) every other date (DA, DT);
- records the de-identification: Patient Identity Removed = YES, the method, the method code
  sequence (DCM 113100, plus 113107 when dates are shifted) and Longitudinal Temporal Information
  Modified (REMOVED or MODIFIED).

New UIDs are ``2.25.<integer of a keyed HMAC-SHA256 of the old UID>``: the same key gives the same
UID for the same instance, study or series in every file and run, and nobody without the key can
map them back. Pixel data is not inspected: burned-in text or faces are out of scope, and files
that declare Burned In Annotation = YES (or are ultrasound) are named in the report's warnings.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from precimed.atomic import atomic_dir, atomic_write_bytes
from precimed.errors import ConfigError, DataError
from precimed.privacy.dates import DateShifter, age_in_years, top_coded_birth
from precimed.privacy.policy import DeidReport, Policy, load_policy
from precimed.privacy.pseudonym import KeyMaterial, Pseudonymizer, key_file_warnings, load_key
from precimed.privacy.tables import check_paths

log = logging.getLogger("precimed.privacy")

DICOM_ROOT = "1.2.840.10008."
UID_DOMAIN = "precimed/dicom-uid/v1"
METHOD = "precimed: PS3.15 E Basic Profile"  # (0012,0063) is LO: at most 64 characters


@dataclass(frozen=True)
class ProfileAttribute:
    tag: int
    keyword: str
    action: str  # as in the standard, e.g. "X/Z/D"

    @property
    def applied(self) -> str:
        """The action precimed applies: the first letter; U* sequences keep their items (cleaned)."""
        if self.action.endswith("U*"):
            return "K"
        return self.action[0]


@cache
def basic_profile() -> dict[int, ProfileAttribute]:
    """The Basic Profile action table shipped with precimed, by tag."""
    data = yaml.safe_load(resources.files("precimed.privacy").joinpath("dicom_basic_profile.yaml")
                          .read_text(encoding="utf-8"))
    out = {}
    for tag_text, keyword, action in data["attributes"]:
        group, element = tag_text.split(",")
        tag = int(group, 16) << 16 | int(element, 16)
        out[tag] = ProfileAttribute(tag, keyword, action)
    return out


def profile_source() -> dict[str, str]:
    data = yaml.safe_load(resources.files("precimed.privacy").joinpath("dicom_basic_profile.yaml")
                          .read_text(encoding="utf-8"))
    return {"version": data["version"], "source": data["source"]}


class _DicomContext:
    def __init__(self, key: KeyMaterial, policy: Policy) -> None:
        self.key = key
        self.options = policy.options.dicom
        self.pseudo = Pseudonymizer(key, policy.options.pseudonym_length, policy.options.pseudonym_prefix)
        self.shifter = DateShifter(key, policy.options.dates.max_shift_days)
        self.counts: Counter = Counter()
        self.warnings: list[str] = []

    def uid(self, value: str) -> str:
        value = str(value).strip()
        if not value or value.startswith(DICOM_ROOT):
            return value
        self.counts["uids_remapped"] += 1
        return "2.25." + str(int.from_bytes(self.key.mac(UID_DOMAIN, value.encode())[:16], "big"))


def _shift_da(value: str, days: int) -> str:
    text = value.strip()
    if len(text) < 8 or not text[:8].isdigit():
        return ""
    try:
        d = date(int(text[:4]), int(text[4:6]), int(text[6:8])) + timedelta(days=days)
    except ValueError:
        return ""
    return d.strftime("%Y%m%d") + text[8:]


def _year_da(value: str) -> str:
    text = value.strip()
    return f"{text[:4]}0101" if len(text) >= 4 and text[:4].isdigit() else ""


def deidentify_dataset(ds, key: KeyMaterial, policy: Policy | None = None, *, ctx: _DicomContext | None = None):  # noqa: ANN001, ANN201
    """De-identify a pydicom Dataset in place; return it. Counts go to `ctx` when given."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    policy = policy or Policy()
    ctx = ctx or _DicomContext(key, policy)
    profile = basic_profile()
    mode = ctx.options.dates
    original_pid = str(ds.get("PatientID", "") or "").strip()
    shift = ctx.shifter.shift_days(original_pid) if original_pid else None
    if mode == "shift" and shift is None:
        ctx.warnings.append("a file has no Patient ID: its dates were removed instead of shifted")
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES" or str(ds.get("Modality", "")) == "US":
        ctx.counts["files_possibly_with_burned_in_text"] += 1

    if mode in ("shift", "year"):
        _top_code_birth(ds, ctx)
    before = len([e for e in _all_elements(ds) if e.tag.is_private])
    ds.remove_private_tags()
    ctx.counts["private_tags_removed"] += before

    def date_action(elem) -> None:  # noqa: ANN001
        values = elem.value if elem.VM > 1 else [elem.value]
        if mode == "shift" and shift is not None:
            new = [_shift_da(str(v), shift) for v in values]
        elif mode == "year":
            new = [_year_da(str(v)) for v in values]
        else:
            return
        elem.value = new if elem.VM > 1 else new[0]
        ctx.counts["dates_shifted" if mode == "shift" else "dates_to_year"] += 1

    def callback(dataset, elem) -> None:  # noqa: ANN001
        tag = int(elem.tag)
        group = tag >> 16
        if 0x5000 <= group <= 0x50FF or (0x6000 <= group <= 0x60FF and (tag & 0xFFFF) in (0x3000, 0x4000)):
            del dataset[elem.tag]
            ctx.counts["curve_overlay_removed"] += 1
            return
        attr = profile.get(tag)
        is_date = elem.VR in ("DA", "DT")
        if tag == 0x00100020:  # Patient ID
            if ctx.options.patient_id == "pseudonym" and original_pid:
                elem.value = ctx.pseudo(original_pid)[:64]
                ctx.counts["patient_id_pseudonymized"] += 1
            else:
                elem.value = ""
                ctx.counts["emptied"] += 1
            return
        if is_date and mode in ("shift", "year") and (mode == "year" or shift is not None):
            if elem.value not in (None, ""):
                date_action(elem)
            return
        action = attr.applied if attr is not None else None
        if action is None:
            if elem.VR == "UI":
                _remap(elem, ctx)
            elif elem.VR == "PN" and elem.value not in (None, ""):
                elem.value = ""
                ctx.counts["person_names_emptied"] += 1
            elif is_date and elem.value not in (None, ""):
                del dataset[elem.tag]
                ctx.counts["other_dates_removed"] += 1
            return
        if action == "X" or action == "C":
            del dataset[elem.tag]
            ctx.counts["removed"] += 1
        elif action == "Z":
            elem.value = Sequence([]) if elem.VR == "SQ" else ("" if elem.VR not in ("US", "SS", "UL", "SL", "FL", "FD")
                                                               else None)
            ctx.counts["emptied"] += 1
        elif action == "D":
            if elem.VR == "SQ":
                return  # items are cleaned by the rules for their own elements
            elem.value = _dummy(elem.VR)
            ctx.counts["dummied"] += 1
        elif action == "U":
            _remap(elem, ctx)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.walk(callback)
        if getattr(ds, "file_meta", None) is not None:
            meta = ds.file_meta
            if "MediaStorageSOPInstanceUID" in meta:
                sop = ds.get("SOPInstanceUID")
                meta.MediaStorageSOPInstanceUID = sop if sop else ctx.uid(meta.MediaStorageSOPInstanceUID)
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = METHOD + {"shift": ", dates shifted", "year": ", dates to year"}.get(mode, "")
        codes = [("113100", "Basic Application Confidentiality Profile")]
        if mode == "shift":
            codes.append(("113107", "Retain Longitudinal Temporal Information Modified Dates Option"))
        items = []
        for value, meaning in codes:
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        ds.LongitudinalTemporalInformationModified = "MODIFIED" if mode in ("shift", "year") else "REMOVED"
    return ds


def _top_code_birth(ds, ctx: _DicomContext) -> None:  # noqa: ANN001
    """Patients aged 90 or over at the study date get a birth date that makes them exactly 90."""
    born, seen = str(ds.get("PatientBirthDate", "") or ""), str(ds.get("StudyDate", "") or "")
    try:
        b = date(int(born[:4]), int(born[4:6]), int(born[6:8]))
        s = date(int(seen[:4]), int(seen[4:6]), int(seen[6:8]))
    except ValueError:
        return
    if age_in_years(b, s) > 89:
        ds.PatientBirthDate = top_coded_birth(s).strftime("%Y%m%d")
        ctx.counts["birth_dates_top_coded_90_plus"] += 1


def _all_elements(ds):  # noqa: ANN001, ANN202
    for elem in ds:
        yield elem
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _all_elements(item)


def _remap(elem, ctx: _DicomContext) -> None:  # noqa: ANN001
    if elem.value in (None, ""):
        return
    if elem.VM > 1:
        elem.value = [ctx.uid(v) for v in elem.value]
    else:
        elem.value = ctx.uid(elem.value)


def _dummy(vr: str) -> object:
    return {"PN": "DEIDENTIFIED", "DA": "19000101", "TM": "000000", "DT": "19000101000000", "UI": "2.25.0",
            "AS": "000Y", "IS": "0", "DS": "0"}.get(vr, "DEIDENTIFIED" if vr in ("LO", "SH", "LT", "ST", "UT", "CS")
                                                     else None)


# ------------------------------------------------------------------------------------------------ files
def deidentify_dicom(input: str | Path, output: str | Path, policy_path: str | Path | None = None,
                     key_file: str | Path | None = None, key_env: str | None = None, *,
                     overwrite: bool = False) -> DeidReport:
    """De-identify one DICOM file, or every DICOM file under a folder (same relative paths).

    Files that are not DICOM are skipped (counted). Output is written atomically (a file in one
    rename; a folder into a temporary folder renamed at the end); it never overwrites the input.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    input_path, output_path = Path(input), Path(output)
    check_paths(input_path, output_path, overwrite=overwrite)
    if input_path.is_dir() and output_path.resolve().is_relative_to(input_path.resolve()):
        raise ConfigError(f"output {output_path} lies inside the input folder; choose a folder outside it")
    key = load_key(key_file, key_env)
    policy = load_policy(policy_path) if policy_path is not None else Policy()
    ctx = _DicomContext(key, policy)
    report = DeidReport("dicom", input_path.name, output_path.name, key.source, key.fingerprint,
                        settings={"dicom": policy.options.dicom.model_dump(), "profile": profile_source()["version"]})
    if not input_path.exists():
        raise DataError(f"{input_path}: not found")

    pydicom_log = logging.getLogger("pydicom")
    old_level = pydicom_log.level
    pydicom_log.setLevel(logging.CRITICAL)  # pydicom may quote element values in its warnings
    try:
        if input_path.is_file():
            try:
                data = _deidentify_bytes(input_path, key, policy, ctx, pydicom)
            except InvalidDicomError:
                raise DataError(f"{input_path}: not a DICOM file") from None
            atomic_write_bytes(output_path, data)
            ctx.counts["files"] += 1
        else:
            files = sorted(p for p in input_path.rglob("*") if p.is_file())
            with atomic_dir(output_path, overwrite=overwrite) as tmp:
                for path in files:
                    try:
                        data = _deidentify_bytes(path, key, policy, ctx, pydicom)
                    except InvalidDicomError:
                        ctx.counts["non_dicom_files_skipped"] += 1
                        continue
                    target = tmp / path.relative_to(input_path)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                    ctx.counts["files"] += 1
    finally:
        pydicom_log.setLevel(old_level)
    report.counts = dict(sorted(ctx.counts.items()))
    report.warnings = sorted(set(ctx.warnings)) + key_file_warnings(key_file, [input_path, output_path])
    if ctx.counts.get("files_possibly_with_burned_in_text"):
        report.warnings.append(f"{ctx.counts['files_possibly_with_burned_in_text']} file(s) are ultrasound or declare "
                               "burned-in annotation: pixel data was NOT de-identified; review the images")
    log.info("de-identified DICOM %s: %d file(s)", input_path.name, ctx.counts.get("files", 0))
    return report


def _deidentify_bytes(path: Path, key: KeyMaterial, policy: Policy, ctx: _DicomContext,
                      pydicom) -> bytes:  # noqa: ANN001
    from pydicom.errors import InvalidDicomError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, force=False)
            deidentify_dataset(ds, key, policy, ctx=ctx)
            buffer = io.BytesIO()
            ds.save_as(buffer)
        except InvalidDicomError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError, OSError, EOFError, struct.error) as exc:
            # pydicom's messages can quote element values: name the file and the error type only
            raise DataError(f"{path.name}: cannot de-identify this DICOM file ({type(exc).__name__}); "
                            "nothing was written") from None
    return buffer.getvalue()
