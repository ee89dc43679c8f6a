"""Feature visualization, split as in lucent: parameterization, transforms, objectives, render."""
