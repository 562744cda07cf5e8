/** @odoo-module **/
// Browser tours of the module's screens (tests/test_screens.py starts them in Chromium).
// One file for Odoo 17, 18 and 19: steps use only `trigger`, `content` and `run`; checks
// run a no-op function (17 clicks a step that has no `run`, 18 and 19 only check it).
import { registry } from "@web/core/registry";

const check = (trigger, content) => ({ trigger, content, run: () => {} });
const click = (trigger, content) => ({ trigger, content, run: "click" });

registry.category("web_tour.tours").add("stock_sync_settings_tour", {
    steps: () => [
        check(".o_setting_box div[name='stock_sync_bridge_url'] input", "Stock Sync settings: bridge URL"),
        check("div[name='stock_sync_shared_secret'] input[type='password']", "secret is masked"),
        check("div[name='stock_sync_marker_targets'] input", "availability targets"),
        check("div[name='stock_sync_warehouse_ids']", "synced warehouses"),
        check("div[name='stock_sync_availability_basis']", "availability basis"),
        check("div[name='stock_sync_decrement_mode']", "channel decrement mode"),
    ],
});

registry.category("web_tour.tours").add("stock_sync_product_tour", {
    steps: () => [
        click(".o_notebook a[name='inventory']", "open the product's Inventory tab"),
        check("div[name='stock_sync_enabled'] input[type='checkbox']:checked", "the product syncs"),
        click("div[name='stock_sync_enabled'] input[type='checkbox']", "stop syncing it"),
        check("div[name='stock_sync_enabled'] input[type='checkbox']:not(:checked)", "unticked"),
        click(".o_form_button_save", "save"),
        check(".o_form_saved, .o_form_view:not(:has(.o_form_button_save:visible))", "saved"),
    ],
});

registry.category("web_tour.tours").add("stock_sync_deliveries_tour", {
    steps: () => [
        check(".o_data_row:contains('TOUR-SKU') td[name='target']:contains('shopify')",
              "the dead letter for Shopify is listed (default filter: Dead)"),
        check(".o_data_row:contains('HTTP 422 inventory item not stocked')", "with its last error"),
        check(".o_data_row td[name='state']:contains('Dead')", "and its state"),
        check(".o_list_view:not(:has(.o_data_row:contains('sap_b1')))", "done rows are filtered out"),
        click(".o_data_row:contains('shopify') td[name='target']", "open the dead letter"),
        check(".o_form_view div[name='last_error']:contains('HTTP 422')", "its error in the form"),
        check(".o_form_view button[name='action_retry']", "and the Retry button"),
    ],
});

registry.category("web_tour.tours").add("stock_sync_marker_tour", {
    steps: () => [
        click(".o_data_row:contains('TOUR-SKU') td[name='product_id']", "open the marker"),
        check(".o_form_view .o_field_one2many .o_data_row:contains('shopify'):contains('Dead')",
              "Shopify: dead"),
        check(".o_form_view .o_field_one2many .o_data_row:contains('sap_b1'):contains('Done')",
              "SAP: done"),
    ],
});

registry.category("web_tour.tours").add("stock_sync_drift_tour", {
    steps: () => [
        click(".o_group_header:contains('TOUR-SKU')", "the last reconciliation, grouped by product"),
        check(".o_data_row:contains('shopify'):contains('changed on the platform')",
              "the channel's difference with its cause"),
        check(".o_data_row td[name='shows']:contains('12')", "what it showed"),
        check(".o_data_row td[name='should']:contains('10')", "what it should show"),
    ],
});
