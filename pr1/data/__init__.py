"""Task data: the record schema (`records`), loaders for the published formats (`refcoco`, `coco`, `pixmo`,
`pageocr`), synthetic generators writing those formats (`synthetic`, CLI: `python -m pr1.data make ...`)."""
