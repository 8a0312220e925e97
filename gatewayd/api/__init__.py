"""The operations behind every face: ``gateway`` holds them, ``values`` what they answer."""
