declare module "virtual:tabfarm-plugins" {}
