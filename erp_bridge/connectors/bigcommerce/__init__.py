"""BigCommerce: order webhooks in (stored, then resolved by a worker), absolute inventory adjustments out."""
