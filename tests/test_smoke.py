import pytest
from django.db import IntegrityError

from tests.factories import SpecRequirementFactory


@pytest.mark.django_db
def test_requirement_keys_are_unique_per_spec():
    requirement = SpecRequirementFactory(key="REQ-001")
    with pytest.raises(IntegrityError):
        SpecRequirementFactory(spec=requirement.spec, key="REQ-001")
