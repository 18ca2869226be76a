"""The writing page of `gpt2zh serve` (index.html, style.css, app.js), shipped inside the package."""
