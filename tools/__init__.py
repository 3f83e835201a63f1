"""The thin command-line tools of cv, installed as the package `cv_tools` with console scripts
(cv-codec, cv-encode, cv-compare, cv-bench, cv-demo-data, cv-visualize, cv-export, cv-footage,
cv-import-dm)."""
