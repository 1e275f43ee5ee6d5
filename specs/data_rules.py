"""Checks of the data section that need the rest of the spec or span its keys: `normalize` and `categorical`.

They read the spec alone, never the data (`tfn check` stays data-free): a
normalised field must exist, hold floats and not be read by a loss; a
categorical column must be one a field lists; a field holds floats or
category indices, not both.
What only the data can tell (a column the CSV header lacks, an integer array
in an npz file) is checked when the data is read.
"""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError

from tfn.layers import is_integer, suggest
from tfn.specs.documents import Document
from tfn.specs.errors import Diagnostic
from tfn.specs.schema import CsvData, Data, Normalized

_DATA = TypeAdapter(Data)


def data_section_problems(doc: Document, input_dtypes: dict[str, str], loss_fields: frozenset[str] = frozenset()) -> list[Diagnostic]:
    """Problems of a data section the schema accepted.

    `input_dtypes` are the inputs' dtypes by name; `loss_fields` the fields the
    losses read (labels, sample weights).
    """
    try:
        data = _DATA.validate_python(doc.data.get("data"))
    except ValidationError:  # the schema reports it
        return []
    if not isinstance(data, Normalized):
        return []
    problems = []
    for name, method in data.normalize.items():
        path = ("data", "normalize", name)
        if name not in data.fields:
            hint = suggest(name, data.fields)
            problems.append(
                doc.error(path, f"no field {name!r} to normalize" + (f" (did you mean {hint!r}?)" if hint else "") + f"; the fields are {', '.join(data.fields)}", key=True)
            )
        elif method != "none":
            reason = _integer_field(data, name) or (
                f"it feeds the model input {name!r} of dtype {input_dtypes[name]}" if is_integer(input_dtypes.get(name, "float32")) else None
            )
            if reason:
                problems.append(doc.error(path, f"normalize applies to float fields; field {name!r} holds integers: {reason}"))
            elif name in loss_fields:
                # the model would learn the normalised target, and nothing would turn its predictions back
                problems.append(
                    doc.error(
                        path,
                        f"field {name!r} is read by the loss: normalize applies to the model's inputs; a normalised target would make "
                        "tfn predict print values in normalised units (scale the loss instead, e.g. huber_loss's delta, as the tabular_regression example does)",
                    )
                )
    if isinstance(data, CsvData):
        problems += _categorical(doc, data)
    return problems


def _integer_field(data: Normalized, name: str) -> str | None:
    """Why CSV field `name` holds integers, or None."""
    if not isinstance(data, CsvData):
        return None
    columns = data.fields[name]
    if isinstance(columns, str):
        if data.categorical.get(columns) == "one_hot":
            return None
        return f"one column makes {'category' if columns in data.categorical else 'class'} indices (a list of columns, [{columns}], makes a float field)"
    if all(data.categorical.get(c) == "index" for c in columns):
        return "its columns are categorical indices"
    return None


def _categorical(doc: Document, data: CsvData) -> list[Diagnostic]:
    problems = []
    listed = list(dict.fromkeys(c for columns in data.fields.values() for c in ([columns] if isinstance(columns, str) else columns)))
    for column in data.categorical:
        if column not in listed:
            hint = suggest(column, listed)
            problems.append(
                doc.error(
                    ("data", "categorical", column),
                    f"column {column!r} is in no field" + (f" (did you mean {hint!r}?)" if hint else "") + f"; the fields' columns are {', '.join(listed)}",
                    key=True,
                )
            )
    for name, columns in data.fields.items():
        if isinstance(columns, str):
            continue
        ids = [c for c in columns if data.categorical.get(c) == "index"]
        if ids and len(ids) < len(columns):
            problems.append(
                doc.error(
                    ("data", "categorical", ids[0]),
                    f"an index column gives integer ids, and field {name!r} also holds float columns; a field holds one or the other: "
                    f"give {ids[0]!r} a field of its own (e.g. {ids[0]}_id: [{ids[0]}]), or make it one_hot",
                )
            )
    return problems
